"""The Grafana dashboard (k8s/components/monitoring/relay-dashboard.json, also provisioned by
docker-compose.yml): every query parses as PromQL and names only metrics relay exports,
and it shows what an operator looks at first."""

from __future__ import annotations

import json
import re
from pathlib import Path

import promql_parser
import pytest
import yaml

from relay.metrics import Metrics
from tests.test_deploy import exported_metric_names

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "k8s/components/monitoring/relay-dashboard.json"

# Labels Prometheus adds to every scraped series (the ServiceMonitor and compose's job).
TARGET_LABELS = {"instance", "job", "namespace", "pod", "service", "container", "endpoint"}

# Grafana's macros and this dashboard's variables, as Prometheus would receive them.
GRAFANA_MACROS = {
    "$__rate_interval": "1m",
    "$__interval": "15s",
    "$__range": "1h",
    "$instance": ".*",
}


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def queries() -> list[tuple[str, str]]:
    return [
        (panel["title"], target["expr"])
        for panel in dashboard()["panels"]
        for target in panel.get("targets", [])
    ]


def targets_of(title: str) -> list[str]:
    (panel,) = [p for p in dashboard()["panels"] if p["title"] == title]
    return [target["legendFormat"] for target in panel["targets"]]


def as_prometheus_sees_it(expr: str) -> str:
    for macro, value in GRAFANA_MACROS.items():
        expr = expr.replace(macro, value)
    assert "$" not in expr, f"an unknown Grafana variable in {expr}"
    return expr


def exported_labels() -> dict[str, set[str]]:
    """Each exported series name and the labels relay gives it."""
    labels: dict[str, set[str]] = {}
    for metric in vars(Metrics()).values():
        names = getattr(metric, "_labelnames", None)  # prometheus_client keeps them here
        if names is None:
            continue
        for suffix in ("", "_total", "_count", "_sum"):
            labels[metric._name + suffix] = set(names)
        labels[metric._name + "_bucket"] = {*names, "le"}
    return labels


def metric_names(expr: str) -> set[str]:
    names: set[str] = set()

    def visit(node: object) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            name = node.name or next(
                (m.value for m in node.matchers.matchers if m.name == "__name__"), None
            )
            assert name, f"a selector without a metric name in {expr}"
            names.add(name)

    promql_parser.walk(promql_parser.parse(as_prometheus_sees_it(expr)), visit)
    return names


@pytest.mark.parametrize("title,expr", queries(), ids=[f"{t}:{e[:40]}" for t, e in queries()])
def test_every_query_parses_and_names_only_metrics_relay_exports(title: str, expr: str):
    used = metric_names(expr)
    assert used, f"{title}: no metric in {expr}"
    unknown = used - exported_metric_names()
    assert not unknown, f"{title}: {unknown} are not exported by relay"


@pytest.mark.parametrize("title,expr", queries(), ids=[f"{t}:{e[:40]}" for t, e in queries()])
def test_every_label_a_query_filters_or_groups_by_exists(title: str, expr: str):
    labels = exported_labels()
    known = set(TARGET_LABELS)
    for name in metric_names(expr):
        known |= labels[name]
    used: set[str] = set()

    def visit(node: object) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            used.update(m.name for m in node.matchers.matchers if m.name != "__name__")
        if isinstance(node, promql_parser.AggregateExpr) and node.modifier is not None:
            used.update(node.modifier.labels)

    promql_parser.walk(promql_parser.parse(as_prometheus_sees_it(expr)), visit)
    assert used <= known, f"{title}: labels {used - known} are not on {metric_names(expr)}"
    for legend in re.findall(r"\{\{(\w+)\}\}", " ".join(targets_of(title))):
        assert legend in known, f"{title}: legend {{{{{legend}}}}} is not a label"


def test_the_dashboard_shows_what_the_issue_asks_for():
    used = {name for _, expr in queries() for name in metric_names(expr)}
    for metric in (
        "relay_polls_total",
        "relay_delivery_lag_seconds_bucket",
        "relay_sse_streams_open",
        "relay_longpoll_waiters",
        "relay_webhooks_total",
        "relay_store_call_duration_seconds_bucket",
        "relay_store_errors_total",
        "relay_pubsub_up",
        "relay_subscriber_lag_seconds",
    ):
        assert metric in used, metric
    polls = next(e for _, e in queries() if "relay_polls_total" in e)
    assert re.search(r"by \(mode, outcome\)", polls)
    webhooks = next(e for _, e in queries() if "relay_webhooks_total" in e)
    assert re.search(r"by \(source, outcome\)", webhooks)


def test_panels_use_the_datasource_variable_and_do_not_overlap():
    board = dashboard()
    names = {v["name"] for v in board["templating"]["list"]}
    assert {"datasource", "instance"} <= names
    taken: set[tuple[int, int]] = set()
    for panel in board["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}"
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24
        cells = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & taken, panel["title"]
        taken |= cells
    assert len({p["id"] for p in board["panels"]}) == len(board["panels"])


def test_compose_and_kubernetes_ship_the_same_dashboard_file():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    grafana = compose["services"]["grafana"]
    mounts = dict(m.rsplit(":", 1)[0].split(":", 1) for m in grafana["volumes"])
    assert mounts["./k8s/components/monitoring/relay-dashboard.json"].endswith("relay.json")
    provisioning = ROOT / mounts_key(mounts, "/etc/grafana/provisioning")
    (source,) = yaml.safe_load((provisioning / "datasources/prometheus.yml").read_text())[
        "datasources"
    ]
    assert source["url"] == "http://prometheus:9090"
    (provider,) = yaml.safe_load((provisioning / "dashboards/relay.yml").read_text())["providers"]
    assert mounts["./k8s/components/monitoring/relay-dashboard.json"].startswith(
        provider["options"]["path"]
    )
    kustomization = yaml.safe_load((DASHBOARD.parent / "kustomization.yaml").read_text())
    (generated,) = kustomization["configMapGenerator"]
    assert generated["files"] == [DASHBOARD.name]
    assert generated["options"]["labels"] == {"grafana_dashboard": "1"}


def mounts_key(mounts: dict[str, str], target: str) -> str:
    return next(source for source, inside in mounts.items() if inside == target)

"""The deployment files, checked the way CI can without a Docker daemon or a cluster:
hadolint on the Dockerfile, yamllint on every YAML file, every Kubernetes manifest against
the Kubernetes schemas (kubernetes-validate), the kustomize build when a kustomize is
installed, and the alert rules parsed as PromQL against the metrics relay really exports.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import kubernetes_validate
import promql_parser
import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from relay.metrics import Metrics

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "k8s"
KUBERNETES_VERSION = "1.37.0"
# Kinds with no schema in kubernetes-validate: kustomize's own files (checked below by
# resolving every path they name) and the Prometheus Operator's CRDs (checked below by
# their fields, and their PromQL parsed).
NOT_KUBERNETES_API = {"Kustomization", "Component"}
OPERATOR_CRDS = {"ServiceMonitor", "PrometheusRule"}
# Strategic-merge patches are partial objects: validated once applied, in the build below.
PATCHES = {K8S / "components/redis/relay-uses-redis.yaml"}


def _tool(name: str) -> str:
    """A console script of this environment (the venv's bin), else PATH."""
    local = Path(sys.executable).parent / name
    found = str(local) if local.exists() else shutil.which(name)
    assert found, f"{name} is not installed: pip install -e '.[test]'"
    return found


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=120)


def manifests() -> list[Path]:
    return sorted(K8S.rglob("*.yaml"))


def documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def test_hadolint_passes_on_the_dockerfile():
    result = _run(_tool("hadolint"), "--failure-threshold", "info", "Dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_image_runs_as_non_root_and_stops_on_sigterm():
    text = (ROOT / "Dockerfile").read_text()
    runtime = text.split(" AS runtime", 1)[1]
    assert re.search(r"^USER 10001:10001$", runtime, re.M)
    assert "STOPSIGNAL SIGTERM" in runtime and "HEALTHCHECK" in runtime
    assert 'ENTRYPOINT ["relay"]' in runtime and 'CMD ["serve"]' in runtime
    assert "pytest" not in runtime and "[test]" not in text  # runtime dependencies only
    ignored = (ROOT / ".dockerignore").read_text().split()
    allowed = ["**", "!pyproject.toml", "!requirements.lock", "!README.md", "!relay/"]
    assert ignored[ignored.index("**") :][:5] == allowed


def test_yamllint_passes_on_every_yaml_file():
    files = [*map(str, manifests()), "docker-compose.yml", *map(str, ROOT.glob("config/**/*.yml"))]
    result = _run(_tool("yamllint"), "--strict", "-c", ".yamllint.yaml", *files)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", manifests(), ids=lambda p: str(p.relative_to(K8S)))
def test_every_manifest_validates_against_the_kubernetes_schemas(path: Path):
    for doc in documents(path):
        kind = doc["kind"]
        if kind in NOT_KUBERNETES_API:
            for entry in [*doc.get("resources", []), *doc.get("components", [])]:
                assert (path.parent / entry).exists(), f"{path}: {entry} does not exist"
            for patch in doc.get("patches", []):
                assert (path.parent / patch["path"]).is_file()
        elif kind in OPERATOR_CRDS:
            assert doc["apiVersion"] == "monitoring.coreos.com/v1"
            assert doc["metadata"]["name"] and doc["spec"]
        elif path not in PATCHES:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def _kustomize() -> list[str] | None:
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    return None


@pytest.mark.parametrize("target", ["base", "overlays/example"])
def test_the_kustomize_build_validates(target: str):
    command = _kustomize()
    if command is None:
        # No kustomize on this machine (none is on PyPI): the per-file checks above still
        # ran; the build itself is covered wherever kubectl or kustomize is installed.
        print("no kustomize or kubectl: the build was not rendered")
        return
    result = _run(*command, str(K8S / target))
    assert result.returncode == 0, result.stderr
    rendered = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    kinds = {doc["kind"] for doc in rendered}
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"} <= kinds
    for doc in rendered:
        if doc["kind"] not in OPERATOR_CRDS:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    if target == "overlays/example":
        assert {"StatefulSet", "ServiceMonitor", "PrometheusRule"} <= kinds
        (deployment,) = [d for d in rendered if d["kind"] == "Deployment"]
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        assert env["RELAY_REDIS_URL"].startswith("redis://relay-redis-0.relay-redis:6379")


def test_the_deployment_drains_before_its_grace_period_ends():
    (deployment,) = documents(K8S / "base/deployment.yaml")
    (config,) = documents(K8S / "base/configmap.yaml")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    pause = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    shutdown = int(config["data"]["RELAY_SHUTDOWN_TIMEOUT"].rstrip("s"))
    assert pod["terminationGracePeriodSeconds"] > pause + shutdown
    assert deployment["spec"]["replicas"] >= 2
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] and security["runAsNonRoot"]
    assert pod["securityContext"]["runAsUser"] != 0


def test_the_statefulset_redis_keeps_an_append_only_file():
    (config,) = documents(K8S / "components/redis/redis-configmap.yaml")
    conf = config["data"]["redis.conf"]
    assert re.search(r"^appendonly yes$", conf, re.M)
    assert re.search(r"^maxmemory-policy noeviction$", conf, re.M)


def test_the_servicemonitor_scrapes_the_services_metrics_port():
    (monitor,) = documents(K8S / "components/monitoring/servicemonitor.yaml")
    (service,) = documents(K8S / "base/service.yaml")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    ports = {port["name"] for port in service["spec"]["ports"]}
    assert all(e["port"] in ports and e["path"] == "/metrics" for e in monitor["spec"]["endpoints"])


def exported_metric_names() -> set[str]:
    names = set()
    for family in Metrics().registry.collect():
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
        if family.type == "counter":
            names.add(f"{family.name}_total")
        if family.type == "histogram":
            names.update(f"{family.name}_{suffix}" for suffix in ("bucket", "count", "sum"))
    return names


def alert_rules() -> list[dict]:
    (rule,) = documents(K8S / "components/monitoring/prometheusrule.yaml")
    return [r for group in rule["spec"]["groups"] for r in group["rules"]]


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda r: r["alert"])
def test_every_alert_is_valid_promql_on_metrics_relay_exports(rule: dict):
    promql_parser.parse(rule["expr"])  # raises ValueError on a syntax error
    used = set(re.findall(r"\brelay_[a-z_]+\b", rule["expr"]))
    assert used <= exported_metric_names(), used - exported_metric_names()
    assert rule["labels"]["severity"] in ("critical", "warning")
    assert rule["annotations"]["summary"]


def test_compose_prometheus_loads_the_same_rules_as_the_prometheusrule():
    (rule,) = documents(K8S / "components/monitoring/prometheusrule.yaml")
    compose_rules = yaml.safe_load((ROOT / "config/prometheus-rules.yml").read_text())
    assert compose_rules["groups"] == rule["spec"]["groups"]


def test_the_compose_file_runs_relay_redis_with_aof_and_prometheus():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"relay", "redis", "prometheus"} <= services.keys()
    assert "--appendonly" in services["redis"]["command"]
    assert services["relay"]["environment"]["RELAY_REDIS_URL"] == "redis://redis:6379/0"
    for mount in services["relay"]["volumes"] + services["prometheus"]["volumes"]:
        source = mount.split(":", 1)[0]
        assert (ROOT / source).exists(), source
    prometheus = yaml.safe_load((ROOT / "config/prometheus.yml").read_text())
    (job,) = prometheus["scrape_configs"]
    metrics_port = services["relay"]["environment"]["RELAY_METRICS_PORT"]
    assert job["static_configs"][0]["targets"] == [f"relay:{metrics_port}"]


def test_metrics_have_their_own_port_that_only_monitoring_may_reach():
    (deployment,) = documents(K8S / "base/deployment.yaml")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {item["name"]: item.get("value") for item in container["env"]}
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert int(env["RELAY_METRICS_PORT"]) == ports["metrics"] != ports["http"]
    (service,) = documents(K8S / "base/service.yaml")
    assert {"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"} in (
        service["spec"]["ports"]
    )
    (monitor,) = documents(K8S / "components/monitoring/servicemonitor.yaml")
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["metrics"]
    (policy,) = documents(K8S / "base/networkpolicy.yaml")
    rules = {rule["ports"][0]["port"]: rule for rule in policy["spec"]["ingress"]}
    assert set(rules) == {ports["http"], ports["metrics"]}
    # Every ingress rule names who may come in: nothing is open to everyone.
    assert all(rule.get("from") for rule in rules.values())
    (monitoring,) = rules[ports["metrics"]]["from"]
    assert "namespaceSelector" in monitoring


def locked_versions() -> dict[str, str]:
    pins = re.findall(
        r"^([A-Za-z0-9_.-]+)==([^\s;\\]+)", (ROOT / "requirements.lock").read_text(), re.M
    )
    return {canonicalize_name(name): version for name, version in pins}


def test_the_lock_satisfies_every_runtime_dependency_and_the_image_installs_it():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    locked = locked_versions()
    for text in [*project["dependencies"], *project["optional-dependencies"]["fast"]]:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{name} is not in requirements.lock: regenerate it (README)"
        assert requirement.specifier.contains(locked[name]), (text, locked[name])
    redis = next(Requirement(t) for t in project["dependencies"] if t.startswith("redis"))
    assert not redis.specifier.contains("9.0"), "redis-py's next major must be capped"
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "--require-hashes -r requirements.lock" in dockerfile
    assert "!requirements.lock" in (ROOT / ".dockerignore").read_text()

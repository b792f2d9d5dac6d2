"""Every metric relay declares (relay/metrics.py) is recorded somewhere in relay/, and every
metric docs/operations.md lists is one relay exports: no name on a dashboard stays empty."""

from __future__ import annotations

import re
from pathlib import Path

from relay.metrics import Metrics
from tests.test_deploy import exported_metric_names

ROOT = Path(__file__).resolve().parent.parent


def declared() -> dict[str, str]:
    """Each metric's attribute on Metrics and its Prometheus name."""
    return {attr: m._name for attr, m in vars(Metrics()).items() if hasattr(m, "_name")}


def test_every_declared_metric_is_recorded():
    source = [
        line for path in (ROOT / "relay").rglob("*.py") for line in path.read_text().splitlines()
    ]
    for attr, name in declared().items():
        uses = [
            line
            for line in source
            if re.search(rf"\.{attr}\b", line) and not re.search(rf"self\.{attr} = ", line)
        ]
        assert uses, f"{name} (Metrics.{attr}) is declared but never recorded"


def test_every_metric_the_operations_guide_lists_is_exported():
    guide = (ROOT / "docs/operations.md").read_text()
    section = guide[guide.index("## Metrics and alerts") : guide.index("**Dashboard.**")]
    listed = set(re.findall(r"`(relay_[a-z_]+)", section))
    assert listed, "the metrics table moved: update this test"
    assert listed <= exported_metric_names(), listed - exported_metric_names()

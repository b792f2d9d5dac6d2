"""Each default is written once, on its settings dataclass: an empty environment gives
exactly the dataclasses' defaults, and every RELAY_* variable sets a field that exists."""

from __future__ import annotations

import dataclasses
import io
import sys
from pathlib import Path

import pytest

from relay.delivery.config import DeliverySettings
from relay.settings import LiveSettings, Settings
from relay.settings.environment import (
    DELIVERY_VARIABLES,
    LIVE_VARIABLES,
    RETENTION_VARIABLES,
    SETTINGS_VARIABLES,
)
from relay.store.base import Retention

TABLES = [
    (Settings, SETTINGS_VARIABLES),
    (Retention, RETENTION_VARIABLES),
    (LiveSettings, LIVE_VARIABLES),
    (DeliverySettings, DELIVERY_VARIABLES),
]


def test_an_empty_environment_gives_the_dataclass_defaults(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no config/relay.toml here
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # not a terminal: JSON logs
    assert Settings.from_env({"RELAY_CONFIG": ""}) == Settings()


@pytest.mark.parametrize(
    ("settings_class", "variables"), TABLES, ids=lambda t: getattr(t, "__name__", "")
)
def test_every_variable_sets_a_field_with_a_plain_default(settings_class, variables):
    fields = {f.name: f for f in dataclasses.fields(settings_class)}
    for variable in variables:
        assert variable.name.startswith("RELAY_")
        assert variable.field in fields, variable
        assert fields[variable.field].default is not dataclasses.MISSING, variable


def test_no_variable_is_listed_twice():
    names = [v.name for _, variables in TABLES for v in variables]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("variables", [t[1] for t in TABLES])
def test_every_variable_is_documented(variables):
    root = Path(__file__).resolve().parent.parent
    docs = (root / "docs/operations.md").read_text() + (root / "README.md").read_text()
    missing = [v.name for v in variables if v.name not in docs]
    assert not missing

"""Settings: parsed once from the environment and the sources file, validated at start,
immutable afterwards. Every error names the variable or the source and key at fault.

model.py holds the dataclasses (and every default), environment.py the RELAY_* variables,
config_file.py relay.toml's vocabulary and its sources (relay.toml_tables reads the file).
"""

from relay.settings.config_file import (
    CONFIG_TABLES,
    PROVIDER_KEYS,
    SOURCE_KEYS,
    Source,
)
from relay.settings.environment import (
    DEFAULT_CONFIG,
    HS256_MIN_BYTES,
    api_keys_from,
    jwt_secret_problems,
)
from relay.settings.model import ConfigError, LiveSettings, Settings
from relay.toml_tables import did_you_mean

__all__ = [
    "CONFIG_TABLES",
    "DEFAULT_CONFIG",
    "HS256_MIN_BYTES",
    "PROVIDER_KEYS",
    "SOURCE_KEYS",
    "ConfigError",
    "LiveSettings",
    "Settings",
    "Source",
    "api_keys_from",
    "did_you_mean",
    "jwt_secret_problems",
]

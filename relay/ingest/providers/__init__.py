"""The provider table: a source's `provider` names one of its entries. Adding a provider is
adding its module (which declares `PROVIDER`) and its line here."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from relay.ingest.providers import (
    evolution,
    standard_webhooks,
    telegram,
    twilio,
    whatsapp_cloud,
    zapi,
)
from relay.ingest.providers.common.base import Provider
from relay.settings import Source, did_you_mean

# A dict (not frozen) so that a test can register a provider of its own.
PROVIDERS: dict[str, Provider] = {
    provider.name: provider
    for provider in (
        standard_webhooks.PROVIDER,
        whatsapp_cloud.PROVIDER,
        telegram.PROVIDER,
        twilio.PROVIDER,
        evolution.PROVIDER,
        zapi.PROVIDER,
    )
}


def provider_problems(sources: Mapping[str, Source], path: Path | None = None) -> list[str]:
    """One line per source whose provider is unknown or whose secrets are missing or bad,
    each naming the file (when given) and the source, as the settings' own errors do."""
    problems = []
    for name, source in sources.items():
        where = f"{path}: [sources.{name}]" if path else f"[sources.{name}]"
        provider = PROVIDERS.get(source.provider)
        if provider is None:
            known = ", ".join(sorted(PROVIDERS))
            hint = did_you_mean(source.provider, PROVIDERS)
            problems.append(f"{where}: unknown provider {source.provider!r}{hint}; known: {known}")
            continue
        missing = [s for s in provider.required_secrets if s not in source.secrets]
        problems += [f"{where}: {s}_env is required for {source.provider}" for s in missing]
        # Each source is checked on its own: another source's problem hides nothing here.
        if provider.check_source is not None and not missing:
            problems += [f"{where}: {line}" for line in provider.check_source(source)]
    return problems

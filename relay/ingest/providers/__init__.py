"""The provider table: a source's `provider` names one of these modules."""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

from relay.ingest.providers import standard_webhooks
from relay.ingest.providers.base import Provider
from relay.settings import Source

PROVIDERS: Mapping[str, Provider] = {
    module.name: cast(Provider, module) for module in (standard_webhooks,)
}


def provider_problems(sources: Mapping[str, Source]) -> list[str]:
    """One line per source whose provider is unknown or whose secrets are missing or bad."""
    problems = []
    for name, source in sources.items():
        where = f"[sources.{name}]"
        provider = PROVIDERS.get(source.provider)
        if provider is None:
            known = ", ".join(sorted(PROVIDERS))
            problems.append(f"{where}: unknown provider {source.provider!r} (known: {known})")
            continue
        for secret in provider.required_secrets:
            if secret not in source.secrets:
                problems.append(f"{where}: {secret}_env is required for {source.provider}")
        check = getattr(provider, "check_source", None)
        if check is not None and not problems:
            problems += [f"{where}: {line}" for line in check(source)]
    return problems

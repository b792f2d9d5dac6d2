"""Keys that rotate: a setting holds the new key and the one it replaces at once, and a
presented credential is checked against every one of them in constant time.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Iterable

# The separator rules, as `split_keys` takes them. Provider secrets are opaque tokens, so a
# comma or any whitespace ends one; API keys may hold spaces, so only a comma does; a
# header's list of signatures (Standard Webhooks) is whitespace-separated.
COMMA_OR_SPACE = ", "
COMMA = ","
SPACE = " "


def split_keys(raw: str, separators: str = COMMA_OR_SPACE) -> list[str]:
    """The keys of `raw`, cut at any of `separators` (" " standing for all whitespace),
    stripped, blanks dropped."""
    pattern = "|".join(r"\s+" if sep == " " else re.escape(sep) for sep in separators)
    return [key.strip() for key in re.split(pattern, raw) if key.strip()]


def matches_any(presented: Iterable[bytes], candidates: Iterable[bytes]) -> bool:
    """Whether any presented value equals any candidate. Every pair is compared, each in
    constant time, without stopping at a match: timing says neither which key matched nor
    how far the comparison went."""
    expected = list(candidates)
    matched = False
    for given in presented:
        for candidate in expected:
            matched |= hmac.compare_digest(given, candidate)
    return matched

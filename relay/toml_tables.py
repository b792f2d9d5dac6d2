"""relay.toml, read once: its `[kind.NAME]` tables walked with one problem line for each
that is not a table, and a "did you mean" for names it does not know.
"""

from __future__ import annotations

import difflib
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any


def read_toml(path: Path, problems: list[str]) -> dict[str, Any] | None:
    """The parsed file, or None (and a problem line) when it cannot be read or parsed."""
    try:
        return tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        problems.append(f"{path}: {error}")
        return None


def named_tables(
    path: Path, document: Mapping[str, Any], kind: str, problems: list[str]
) -> Iterator[tuple[str, dict[str, Any], str]]:
    """Each `[kind.NAME]` table as (NAME, table, where): `where` starts its problem lines."""
    tables = document.get(kind, {})
    if not isinstance(tables, dict):
        problems.append(f"{path}: [{kind}] must be a table of tables")
        return
    for name, table in tables.items():
        where = f"{path}: [{kind}.{name}]"
        if not isinstance(table, dict):
            problems.append(f"{where} must be a table")
            continue
        yield name, table, where


def did_you_mean(word: str, known: Iterable[str]) -> str:
    """` (did you mean X?)` when a known word is close, else ``."""
    close = difflib.get_close_matches(word, list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""

"""The report: one markdown table of rows, the notes under it, and the footnotes that
say how to read its columns."""

from __future__ import annotations

from dataclasses import dataclass

# The label of the rows measured on the --baseline checkout.
BEFORE = "relay before (--baseline), redis engine"


@dataclass
class Row:
    scenario: str
    server: str
    target: str = ""
    rps: float | None = None
    p50: float | None = None
    p99: float | None = None
    cpu_us: float | None = None
    ratio: float | None = None
    cpu_ratio: float | None = None
    verdict: str = ""
    note: str = ""

    def cells(self) -> list[str]:
        def num(value: float | None, fmt: str) -> str:
            return "" if value is None else format(value, fmt)

        return [
            self.scenario,
            self.server,
            self.target,
            num(self.rps, ",.0f"),
            num(self.p50, ".2f"),
            num(self.p99, ".2f"),
            num(self.cpu_us, ".0f"),
            num(self.ratio, ".2f") + ("×" if self.ratio is not None else ""),
            num(self.cpu_ratio, ".2f") + ("×" if self.cpu_ratio is not None else ""),
            self.verdict,
        ]


HEADER = [
    "scenario",
    "server",
    "target",
    "req/s",
    "p50 ms",
    "p99 ms",
    "CPU µs/req",
    "ratio",
    "CPU ratio",
    "result",
]


def table(rows: list[Row]) -> str:
    cells = [HEADER, *(row.cells() for row in rows)]
    lines = ["| " + " | ".join(line) + " |" for line in cells]
    lines.insert(1, "|" + "|".join(" --- " for _ in HEADER) + "|")
    return "\n".join(lines)


def render(header: list[str], rows: list[Row], notes: list[str], elapsed: float) -> str:
    return "\n".join(
        [
            *header,
            "",
            table(rows),
            "",
            *(f"- {note}" for note in notes),
            "- ratio: requests/s over the ceiling measured in this run (GET rows over the bare "
            "GET, POST rows over the bare POST; scale-out over --workers 1)",
            "- CPU µs/req: the server process's user+system CPU time (from /proc, workers "
            "included) over the requests it answered; steadier than req/s on a shared machine",
            "- CPU ratio: the ceiling's CPU µs/req over this row's (what the ratio would be "
            "if both were CPU-bound on an otherwise idle core); result is judged on ratio",
            f"- run took {elapsed:.0f} s",
        ]
    )

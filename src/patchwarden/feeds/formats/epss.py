"""FIRST EPSS score CSV to ``(CVE id, EpssScore)`` pairs (``detect`` unwraps the gzip
file FIRST publishes, within the decompression bounds).

The file starts ``#model_version:v2023.03.01,score_date:2025-02-20T00:00:00+0000``, then
the header ``cve,epss,percentile``, then one row per CVE. The first line is required:
without its ``score_date`` the scores cannot be dated. Every row is checked (CVE id,
both numbers between 0 and 1, no duplicates) and an error names its line number.
"""

from __future__ import annotations

from datetime import date

from patchwarden.core.model import EpssScore
from patchwarden.feeds.formats._common import CVE_ID, Where, decode_text
from patchwarden.feeds.parsed import ParsedFeed

HEADER = "cve,epss,percentile"
_FIRST_LINE_HINT = (
    "an EPSS file starts with '#model_version:<version>,score_date:<YYYY-MM-DD…>' "
    f"and then the header '{HEADER}'"
)


def parse_epss(data: bytes, source: str) -> ParsedFeed:
    """Parse an EPSS CSV; ``meta`` keeps model_version and score_date as written."""
    lines = decode_text(data, source).splitlines()
    meta, score_date = _first_line(lines[0] if lines else "", source)
    if len(lines) < 2 or lines[1].strip() != HEADER:
        found = lines[1].strip() if len(lines) > 1 else "end of file"
        raise Where(source, "line 2").error(
            f"expected the header {HEADER!r}, found {found[:60]!r}",
            field="header",
            hint=_FIRST_LINE_HINT,
        )
    model = meta.get("model_version", "")
    scores: list[tuple[str, EpssScore]] = []
    seen: set[str] = set()
    for number, line in enumerate(lines[2:], start=3):
        if not line.strip():
            continue
        where = Where(source, f"line {number}")
        fields = line.strip().split(",")
        if len(fields) != 3:
            raise where.error(
                f"expected 3 comma-separated fields, found {len(fields)}",
                hint=f"rows follow the header {HEADER!r}",
            )
        cve, epss, percentile = fields
        if not CVE_ID.fullmatch(cve):
            raise where.error(f"not a CVE id: {cve!r}", field="cve")
        if cve in seen:
            raise where.error(f"duplicate row for {cve}", field="cve")
        seen.add(cve)
        scores.append(
            (
                cve,
                EpssScore(
                    score=_probability(epss, where, "epss"),
                    percentile=_probability(percentile, where, "percentile"),
                    score_date=score_date,
                    model_version=model,
                ),
            )
        )
    return ParsedFeed(kind="epss", source=source, epss=scores, meta=meta)


def looks_like_epss(text: str) -> bool:
    """Whether text starts like an EPSS CSV (the comment line or the header)."""
    first = text.lstrip().split("\n", 1)[0].strip()
    return first.startswith("#model_version") or first == HEADER


def _first_line(line: str, source: str) -> tuple[dict[str, str], date]:
    where = Where(source, "line 1")
    if not line.startswith("#"):
        raise where.error(
            f"expected the '#model_version:…,score_date:…' line, found {line[:60]!r}",
            field="score_date",
            hint=_FIRST_LINE_HINT,
        )
    meta: dict[str, str] = {}
    for part in line[1:].split(","):
        key, sep, value = part.partition(":")
        if sep:
            meta[key.strip()] = value.strip()
    written = meta.get("score_date", "")
    if not written:
        raise where.error(
            "the first line has no score_date", field="score_date", hint=_FIRST_LINE_HINT
        )
    try:
        score_date = date.fromisoformat(written[:10])
    except ValueError as exc:
        raise where.error(
            f"invalid score_date {written!r}", field="score_date", hint=_FIRST_LINE_HINT
        ) from exc
    return meta, score_date


def _probability(text: str, where: Where, field: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    # The comparison is False for NaN, so "nan" and non-numbers fail here too.
    if not 0.0 <= value <= 1.0:
        raise where.error(
            f"{field} must be a number between 0 and 1, found {text!r}",
            field=field,
            hint="the file may be corrupt; download it again",
        )
    return value

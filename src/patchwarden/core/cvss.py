"""CVSS vectors to base scores, and the choice of one score among several.

Scoring is delegated to the ``cvss`` library (FIRST's reference formulas for v2, v3.0,
v3.1 and v4.0); this module only recognises the version from the vector's prefix,
translates the library's errors into ``ValidationFailed`` and applies the rules below.

Severity labels: v3.x and v4.0 use the specification's qualitative scale (None, Low,
Medium, High, Critical). CVSS v2 defines no labels; NVD's v2 bands are used instead:
Low below 4.0 (including 0.0), Medium below 7.0, High from 7.0.

``best_score`` picks, in this order of preference:

1. the newest CVSS version: 4.0, then 3.1, then 3.0, then 2.0;
2. within one version, the most authoritative source: ``nvd`` (NVD's primary score),
   then ``cna`` (the CVE record's assigner), then any ``adp:…`` container, then others;
3. then the higher base score (the cautious choice when two peers disagree);
4. then the first one given.
"""

from __future__ import annotations

from collections.abc import Iterable

import cvss as cvsslib

from patchwarden.core.errors import ValidationFailed
from patchwarden.core.model import CvssScore

_V4_PREFIX = "CVSS:4.0/"
_V3_PREFIXES = {"CVSS:3.1/": "3.1", "CVSS:3.0/": "3.0"}

_VERSION_RANK = {"4.0": 4, "3.1": 3, "3.0": 2, "2.0": 1}


def vector_version(vector: str) -> str:
    """The CVSS version of a vector: ``"4.0"``, ``"3.1"``, ``"3.0"`` or ``"2.0"``.

    v3 and v4 vectors carry a ``CVSS:x.y/`` prefix; a bare vector starting with ``AV:``
    is v2. Anything else raises ``ValidationFailed``.
    """
    text = vector.strip()
    if text.startswith(_V4_PREFIX):
        return "4.0"
    for prefix, version in _V3_PREFIXES.items():
        if text.startswith(prefix):
            return version
    if text.startswith("AV:"):
        return "2.0"
    if text.startswith("CVSS:"):
        found = text.split("/", 1)[0]
        raise ValidationFailed(
            f"unsupported CVSS version {found!r} in vector {vector!r}",
            hint="supported: CVSS:4.0/, CVSS:3.1/, CVSS:3.0/ and bare v2 vectors (AV:…)",
        )
    raise ValidationFailed(
        f"not a CVSS vector: {vector!r}",
        hint="expected a prefix CVSS:4.0/, CVSS:3.1/ or CVSS:3.0/, or a v2 vector starting AV:",
    )


def v2_severity(base_score: float) -> str:
    """NVD's label for a CVSS v2 base score (v2 itself defines none)."""
    if base_score < 4.0:
        return "Low"
    if base_score < 7.0:
        return "Medium"
    return "High"


def score_vector(vector: str, source: str = "") -> CvssScore:
    """Compute the base score and severity label of a CVSS v2, v3.0, v3.1 or v4.0 vector.

    ``source`` is kept on the result (``nvd``, ``cna``, ``adp:CISA-ADP``, …) so that
    ``best_score`` can rank scores of the same version. An invalid vector raises
    ``ValidationFailed`` naming the vector and the library's reason.
    """
    text = vector.strip()
    version = vector_version(text)
    try:
        if version == "4.0":
            v4 = cvsslib.CVSS4(text)
            base = float(v4.base_score)
            severity = str(v4.severity)
        elif version == "2.0":
            v2 = cvsslib.CVSS2(text)
            base = float(v2.scores()[0])
            severity = v2_severity(base)
        else:
            v3 = cvsslib.CVSS3(text)
            base = float(v3.scores()[0])
            severity = str(v3.severities()[0])
    except cvsslib.CVSSError as exc:
        raise ValidationFailed(
            f"invalid CVSS {version} vector {vector!r}: {exc}",
            hint="check the metric names and values against the CVSS specification",
        ) from exc
    return CvssScore(
        version=version, vector=text, base_score=base, severity=severity, source=source
    )


def _source_rank(source: str) -> int:
    if source == "nvd":
        return 3
    if source == "cna":
        return 2
    if source.startswith("adp:"):
        return 1
    return 0


def best_score(scores: Iterable[CvssScore]) -> CvssScore | None:
    """The preferred score among ``scores`` (see the module docstring), or ``None``."""
    best: CvssScore | None = None
    best_key: tuple[int, int, float] | None = None
    for score in scores:
        key = (_VERSION_RANK.get(score.version, 0), _source_rank(score.source), score.base_score)
        # Strictly greater: on a full tie the first score given wins.
        if best_key is None or key > best_key:
            best, best_key = score, key
    return best

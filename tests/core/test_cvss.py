"""CVSS scoring against hand-checked vectors and against the scores NVD and CNAs publish."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cvss import CVSSError

from patchwarden.core.cvss import best_score, score_vector, v2_severity, vector_version
from patchwarden.core.errors import ValidationFailed
from patchwarden.core.model import CvssScore
from tests.support import data_file


@pytest.mark.parametrize(
    ("vector", "version", "base", "severity"),
    [
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", "3.1", 9.8, "Critical"),
        ("CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", "3.0", 9.8, "Critical"),
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H", "3.1", 10.0, "Critical"),
        ("CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:L/I:L/A:H", "3.1", 6.6, "Medium"),
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:N", "3.1", 0.0, "None"),
        ("CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N", "4.0", 9.3, "Critical"),
        ("AV:N/AC:L/Au:N/C:P/I:P/A:P", "2.0", 7.5, "High"),
        ("AV:N/AC:M/Au:N/C:P/I:P/A:P", "2.0", 6.8, "Medium"),
        ("AV:L/AC:L/Au:N/C:N/I:N/A:P", "2.0", 2.1, "Low"),
    ],
)
def test_score_vector_known_values(vector: str, version: str, base: float, severity: str) -> None:
    score = score_vector(f"  {vector} ", source="nvd")
    assert score == CvssScore(version, vector, base, severity, "nvd")


def test_v2_bands_follow_nvd() -> None:
    assert [v2_severity(s) for s in (0.0, 3.9, 4.0, 6.9, 7.0, 10.0)] == [
        "Low",
        "Low",
        "Medium",
        "Medium",
        "High",
        "High",
    ]


@pytest.mark.parametrize(
    ("vector", "fragment"),
    [
        ("CVSS:3.1/AV:N", "Missing mandatory"),
        ("CVSS:4.0/AV:N/AC:L", "Missing mandatory"),
        ("AV:N/AC:L/Au:N/C:P/I:P/A:X", "invalid CVSS 2.0 vector"),
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/", "invalid CVSS 3.1 vector"),
    ],
)
def test_invalid_vector_translates_library_error(vector: str, fragment: str) -> None:
    with pytest.raises(ValidationFailed, match=fragment) as caught:
        score_vector(vector)
    assert isinstance(caught.value.__cause__, CVSSError)
    assert vector in str(caught.value)


@pytest.mark.parametrize("vector", ["garbage", "", "CVSS:3.2/AV:N/AC:L", "CVSS:2.0/AV:N"])
def test_unrecognised_version_is_rejected(vector: str) -> None:
    with pytest.raises(ValidationFailed):
        vector_version(vector)
    with pytest.raises(ValidationFailed):
        score_vector(vector)


def _s(version: str, base: float, source: str) -> CvssScore:
    return CvssScore(version, f"v{version}-{base}-{source}", base, "", source)


def test_best_score_prefers_newest_version() -> None:
    v2 = _s("2.0", 10.0, "nvd")
    v30 = _s("3.0", 9.0, "nvd")
    v31 = _s("3.1", 5.0, "adp:CISA-ADP")
    v40 = _s("4.0", 1.0, "other")
    assert best_score([v2, v30, v31, v40]) is v40
    assert best_score([v2, v30, v31]) is v31
    assert best_score([v2, v30]) is v30
    assert best_score([v2]) is v2
    assert best_score([]) is None


def test_best_score_same_version_prefers_nvd_then_cna_then_adp() -> None:
    nvd = _s("3.1", 5.0, "nvd")
    cna = _s("3.1", 9.0, "cna")
    adp = _s("3.1", 9.5, "adp:CISA-ADP")
    secondary = _s("3.1", 9.9, "nvd-secondary:psirt@us.ibm.com")
    assert best_score([secondary, adp, cna, nvd]) is nvd
    assert best_score([secondary, adp, cna]) is cna
    assert best_score([secondary, adp]) is adp


def test_best_score_tie_takes_higher_score_then_first() -> None:
    low = _s("3.1", 4.0, "nvd-secondary:a")
    high = _s("3.1", 8.0, "nvd-secondary:b")
    assert best_score([low, high]) is high
    first = _s("3.1", 8.0, "nvd-secondary:c")
    assert best_score([first, high]) is first


def _nvd_metrics() -> list[tuple[str, float, str]]:
    root = data_file("osvdev-vulnfeeds-testdata/vulnfeeds/test_data/nvdcve-2.0")
    pages = [
        *sorted(root.glob("*.json")),
        data_file("vunnel-fixtures/tests/unit/providers/nvd/test-fixtures/full-page.json"),
        data_file("osvdev-vulnfeeds-testdata/vulnfeeds/conversion/nvd/testdata/test.json"),
        data_file("vunnel-fixtures/tests/unit/providers/nvd/test-fixtures/single-entry.json"),
    ]
    found = []
    for page in pages:
        for item in json.loads(page.read_bytes())["vulnerabilities"]:
            for key, metrics in item["cve"].get("metrics", {}).items():
                if not key.startswith("cvssMetric"):
                    continue
                for metric in metrics:
                    data = metric["cvssData"]
                    label = data.get("baseSeverity") or metric.get("baseSeverity")
                    found.append((data["vectorString"], data["baseScore"], label))
    return found


def test_scores_match_what_nvd_publishes() -> None:
    metrics = _nvd_metrics()
    assert len(metrics) == 112
    for vector, base, label in metrics:
        score = score_vector(vector)
        assert score.base_score == base, vector
        assert score.severity.upper() == label, vector


# Where a CNA's published baseScore is not the base score of its own vector. Fortinet
# publishes the temporal score (its vectors carry E/RL/RC); the others match the CVSS 3.0
# rounding rule although the vector says 3.1. Values: (published, computed).
CNA_SCORE_SLIPS = {
    "CVE-2022-41328.json": (6.5, 6.7),
    "CVE-2022-42475.json": (9.3, 9.8),
    "CVE-2023-27997.json": (9.2, 9.8),
    "CVE-2023-48788.json": (9.3, 9.8),
    "CVE-2024-21762.json": (9.6, 9.8),
    "CVE-2023-38497.json": (7.8, 7.9),
    "CVE-2024-29039.json": (9.1, 9.0),
    "CVE-2024-32002.json": (9.1, 9.0),
    "CVE-2024-32004.json": (8.2, 8.1),
    "CVE-2024-32465.json": (7.4, 7.3),
}


def test_scores_match_what_cve5_records_publish() -> None:
    root = data_file("cve5-vulnrichment")
    checked = 0
    slips: dict[str, tuple[float, float]] = {}
    for path in sorted(Path(root).glob("*/*/CVE-*.json")):
        record = json.loads(path.read_bytes())
        containers = [record["containers"]["cna"], *record["containers"].get("adp", [])]
        for container in containers:
            for metric in container.get("metrics", []):
                for key in ("cvssV4_0", "cvssV3_1", "cvssV3_0", "cvssV2_0"):
                    if key not in metric:
                        continue
                    checked += 1
                    score = score_vector(metric[key]["vectorString"])
                    if score.base_score != metric[key]["baseScore"]:
                        slips[path.name] = (metric[key]["baseScore"], score.base_score)
                    elif "baseSeverity" in metric[key]:  # v2 entries carry no label
                        assert score.severity.upper() == metric[key]["baseSeverity"], path.name
    # cna 3.1: 678, 3.0: 93, 4.0: 19, 2.0: 7 and CISA ADP 3.1: 324 (SOURCE.txt)
    assert checked == 1121
    assert slips == CNA_SCORE_SLIPS

"""The shared HEC vocabulary: one table each, used by harmony-events, harmony-alerts and hec-emulator."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from harmony_pipes._core import hec
from harmony_pipes.harmony_events import config as settings
from harmony_pipes.hec_emulator import generate, store

PLUGINS = Path(hec.__file__).resolve().parents[1]
REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "reference" / "harmony-email-api.md"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1", 1), ("5", 5), (3, 3), (4.0, 4), ("Very Low", 1), ("very-low", 1), ("VeryLow", 1), ("lowest", 1),
        ("informational", 1), ("Low", 2), ("MEDIUM", 3), ("High", 4), ("Critical", 5), ("Highest", 5),
        ("very high", 5), (" 2 ", 2),
        ("0", None), ("6", None), (7, None), (True, None), (None, None), ("urgent", None), (2.5, None), ("2.5", None),
        ([], None),
    ],
)  # fmt: skip
def test_severity_numbers_and_names(value: object, expected: int | None) -> None:
    assert hec.parse_severity(value) == expected


def test_native_labels_are_check_points() -> None:
    assert hec.SEVERITY_LABELS == {1: "Very Low", 2: "Low", 3: "Medium", 4: "High", 5: "Critical"}
    assert {hec.parse_severity(label) for label in hec.SEVERITY_LABELS.values()} == {1, 2, 3, 4, 5}
    assert {hec.parse_severity(label) for label in hec.ELASTIC_SEVERITY_ENUM.values()} == {1, 2, 3, 4, 5}


def test_states_types_and_saas() -> None:
    assert set(hec.STATES) == {"new", "detected", "in_progress", "pending", "remediated", "dismissed", "exception"}
    for wanted in ("suspicious_phishing", "suspicious_malware", "malicious_url_click", "graymail"):
        assert wanted in hec.EVENT_TYPES
    assert len(hec.EVENT_TYPES) == 12
    assert {hec.type_key(label) for label in hec.EVENT_TYPE_LABELS.values()} == set(hec.EVENT_TYPES)
    assert {"office365_emails", "google_mail", "ms_teams", "slack", "box"} <= set(hec.SAAS)


@pytest.mark.skipif(not REFERENCE.exists(), reason="shared/reference is not beside the checkout")
def test_every_type_of_the_api_reference_is_known() -> None:
    """§2.4 of the reference lists the types the API sends (`→ sent as ...`)."""
    text = REFERENCE.read_text(encoding="utf-8")
    sent = text.split("sent as", 1)[1].split(";", 1)[0]
    listed = set(re.findall(r"[a-z_]+", sent.replace("`", " ")))
    assert len(listed) == 12
    assert listed == set(hec.EVENT_TYPES)


@pytest.mark.parametrize(
    ("value", "expected_us"),
    [
        ("2024-10-14T07:02:11.229935+00:00", 1728889331229935),
        ("2025-06-29T21:37:45+00:00", 1751233065000000),
        ("2025-06-29T21:37:45Z", 1751233065000000),
        ("2025-06-29T21:37:45", 1751233065000000),
        ("2025-06-29T23:37:45.5+02:00", 1751233065500000),
        ("yesterday", None),
        (None, None),
        (17, None),
    ],
)
def test_event_time_us(value: object, expected_us: int | None) -> None:
    assert hec.event_time_us(value) == expected_us
    if expected_us is not None:
        assert hec.event_time_ms(value) == expected_us // 1000


def test_the_processors_use_the_shared_tables() -> None:
    """Not copies: the same objects (a spelling accepted in one place is accepted in all)."""
    assert settings.STATES is hec.STATES
    assert set(generate.STATES) <= set(hec.STATES)
    assert set(generate.SAAS) <= set(hec.SAAS)
    assert {t[0] for t in generate.TYPES} == set(hec.EVENT_TYPES)
    assert store.normalize_severity("Very Low") == "1"
    assert settings.build_filters(None, "in_progress", "very low,Highest", None) == {
        "eventStates": ["in_progress"],
        "severities": [1, 5],
    }


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_harmony_alerts_does_not_import_harmony_events() -> None:
    for path in (PLUGINS / "harmony_alerts").glob("*.py"):
        assert not any("harmony_events" in module for module in _imports(path)), path.name


def test_no_second_copy_of_the_tables() -> None:
    """The severity name table and the state list are written once, in _core/hec.py."""
    for path in PLUGINS.rglob("*.py"):
        if path.name == "hec.py" or "aws_discovery" in path.parts:
            continue
        text = path.read_text(encoding="utf-8")
        assert '"very_low": 1' not in text and '"very low": 1' not in text, path
        assert '"remediated", "dismissed"' not in text, path
        assert "def event_created_us" not in text and "def event_time_ms" not in text, path

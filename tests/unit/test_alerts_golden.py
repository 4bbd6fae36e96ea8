"""Golden fixtures: tests/fixtures/harmony_alerts/<case>/{input.ndjson, args.txt, expected.ndjson}.

Each case runs the real `harmony-alerts` process; stdout must equal expected.ndjson byte for
byte and every line must validate against its schema. Regenerate after a deliberate change with
`HARMONY_UPDATE_GOLDEN=1 pytest tests/unit/test_alerts_golden.py` and review the diff.
"""

from __future__ import annotations

import os
import shlex

import orjson
import pytest

from tests.conftest import FIXTURES, SCHEMAS, SHARED_DIR, run_cli
from tests.helpers.schemas import assert_valid

CASES = sorted(p for p in (FIXTURES / "harmony_alerts").iterdir() if p.is_dir())
SCHEMA_BY_FORMAT = {"native": "alert", "ecs": "alert-ecs", "ocsf": "alert-ocsf"}
# the 12 threat types of reference/harmony-email-api.md section 2.4 (XSOAR's list, which its
# classifier maps exactly); every one must have a golden case in which it becomes an alert
REFERENCE_TYPES = (
    "dlp", "malware", "phishing", "anomaly", "suspicious_phishing", "suspicious_malware", "shadow_it", "alert",
    "spam", "malicious_url", "malicious_url_click", "graymail",
)  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_golden_case(case) -> None:
    args_file = case / "args.txt"
    args = shlex.split(args_file.read_text()) if args_file.exists() else []
    input_bytes = (case / "input.ndjson").read_bytes()
    result = run_cli(["harmony-alerts", *args], input_bytes)
    assert result.returncode == 0, result.stderr
    expected_path = case / "expected.ndjson"
    if os.environ.get("HARMONY_UPDATE_GOLDEN"):
        expected_path.write_bytes(result.stdout)
    assert result.stdout == expected_path.read_bytes()
    output_format = args[args.index("--format") + 1] if "--format" in args else "native"
    originals = [orjson.loads(line) for line in input_bytes.splitlines() if line.strip()]
    raw_lines = [line.strip() for line in input_bytes.splitlines() if line.strip()]
    for line in result.stdout_lines:
        alert = orjson.loads(line)
        assert_valid(SCHEMA_BY_FORMAT[output_format], alert)
        embedded = alert["unmapped"]["checkpoint_harmony"] if output_format == "ocsf" else alert["checkpoint_harmony"]
        assert embedded in originals  # the original event, untouched ...
        key = b'"checkpoint_harmony":' + raw_lines[originals.index(embedded)]
        assert key in line  # ... byte for byte
    for event in originals:
        assert_valid("harmony-event", event)
    stats = result.stats
    assert stats["records_in"] == len(originals)
    assert stats["records_out"] == len(result.stdout_lines)
    assert stats["alerts"] + stats["duplicates"] + stats["filtered"] == len(originals)


def _types_in(path) -> set:
    if not path.exists():
        return set()
    found = set()
    for line in path.read_bytes().splitlines():
        if line.strip():
            record = orjson.loads(line)
            original = record.get("checkpoint_harmony") or record.get("unmapped", {}).get("checkpoint_harmony", {})
            found.add(original.get("type"))
    return found


def test_every_reference_event_type_has_a_golden_case_where_it_is_an_alert() -> None:
    reference = SHARED_DIR / "reference" / "harmony-email-api.md"
    if reference.exists():  # the list above is the reference's, not a copy that drifted
        import re

        listed = re.search(r"→ sent as\s+`([^`]+)`", reference.read_text())
        assert listed is not None
        assert tuple(t.strip() for t in listed.group(1).split(",")) == REFERENCE_TYPES
    schema = orjson.loads((SCHEMAS / "harmony-event.schema.json").read_bytes())
    assert set(schema["properties"]["type"]["examples"]) == set(REFERENCE_TYPES)
    fed = set()
    for case in CASES:
        fed |= {
            orjson.loads(line).get("type") for line in (case / "input.ndjson").read_bytes().splitlines() if line.strip()
        }
    emitted = set().union(*(_types_in(case / "expected.ndjson") for case in CASES))
    assert set(REFERENCE_TYPES) - fed == set(), "types with no golden input"
    assert set(REFERENCE_TYPES) - emitted == set(), "types never emitted as an alert by any golden case"

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

from tests.conftest import FIXTURES, run_cli
from tests.helpers.schemas import assert_valid

CASES = sorted(p for p in (FIXTURES / "harmony_alerts").iterdir() if p.is_dir())
SCHEMA_BY_FORMAT = {"native": "alert", "ecs": "alert-ecs", "ocsf": "alert-ocsf"}


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
    for line in result.stdout_lines:
        alert = orjson.loads(line)
        assert_valid(SCHEMA_BY_FORMAT[output_format], alert)
        embedded = alert["unmapped"]["checkpoint_harmony"] if output_format == "ocsf" else alert["checkpoint_harmony"]
        assert embedded in originals  # the original event, untouched
    for event in originals:
        assert_valid("harmony-event", event)
    stats = result.stats
    assert stats["records_in"] == len(originals)
    assert stats["records_out"] == len(result.stdout_lines)
    assert stats["alerts"] + stats["duplicates"] + stats["filtered"] == len(originals)

"""schemas/athena/alerts.sql fits what we write: its columns are the alert record's fields, and
its partition projection matches the keys s3-batch really produces (dt=YYYY-MM-DD/)."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, SCHEMAS, run_cli

pytestmark = pytest.mark.integration

SQL = (REPO_ROOT / "schemas" / "athena" / "alerts.sql").read_text()


def columns() -> dict[str, str]:
    body = SQL.split("CREATE EXTERNAL TABLE", 1)[1].split("\n)\n", 1)[0]
    found = {}
    for line in body.splitlines()[1:]:
        line = line.split("--", 1)[0].strip()
        match = re.match(r"`?(\w+)`?\s+([a-z]+(?:<[^>]*>)?)", line)
        if match:
            found[match.group(1)] = match.group(2)
    return found


def test_columns_are_the_alert_fields() -> None:
    schema = json.loads((SCHEMAS / "alert.schema.json").read_text())
    assert set(columns()) == set(schema["properties"])
    assert columns()["timestamp"] == "bigint"
    assert columns()["severity"] == "int"
    assert columns()["alert_reasons"] == "array<string>"


def test_projection_matches_the_s3_batch_key_layout(tmp_path: Path, moto_server: str, aws_env) -> None:
    location = re.search(r"LOCATION '(s3://[^']+)'", SQL).group(1)
    template = re.search(r"'storage.location.template'\s*=\s*'([^']+)'", SQL).group(1)
    assert template == location + "dt=${dt}/"
    assert "'projection.dt.format'        = 'yyyy-MM-dd'" in SQL
    # What s3-batch writes for an alert of 2026-03-04 with its default key template:
    ms = int(datetime(2026, 3, 4, 12, 0, tzinfo=UTC).timestamp() * 1000)
    prefix = location.split("/", 3)[3]  # harmony/alerts/
    import boto3

    bucket = f"athena-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1").create_bucket(Bucket=bucket)
    result = run_cli(
        ["s3-batch", "--dest", f"s3://{bucket}/{prefix}", "--state-dir", str(tmp_path / "state")],
        json.dumps({"timestamp": ms, "event_id": "e1"}).encode() + b"\n",
        env={**aws_env, "S3_BATCH_ENDPOINT_URL": moto_server},
    )
    assert result.returncode == 0, result.stderr
    (receipt,) = [json.loads(line) for line in result.stdout_lines]
    assert receipt["key"].startswith(f"{prefix}dt=2026-03-04/"), receipt["key"]
    assert receipt["key"].endswith(".ndjson.gz")

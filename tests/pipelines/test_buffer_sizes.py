"""The exec buffer sizes in the shipped configs are above the longest record our commands can
write: the largest event harmony-alerts accepts (--max-line-bytes, 1 MiB) becomes an alert of
about 2 MiB (the description is kept twice: normalized and inside the original event), which the
real Fluent Bit, with the flow-1 config's Buf_Size, delivers whole; Vector's limit is checked the
same way."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import orjson
import pytest
import yaml

from tests.conftest import REPO_ROOT, run_cli
from tests.helpers.events import make_events
from tests.helpers.fluentbit import FLUENT_BIT_DIR

pytestmark = [pytest.mark.pipeline, pytest.mark.xdist_group("fb-traps")]

MAX_LINE_BYTES = 1_048_576  # harmony-alerts' default --max-line-bytes
UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}


def size_bytes(text: str) -> int:
    number, unit = re.fullmatch(r"(\d+)\s*([KMG]?)B?", text.strip(), re.IGNORECASE).groups()
    return int(number) * UNITS[unit.upper()]


def buf_size(name: str) -> int:
    """The exec input's buffer of one shipped Fluent Bit config (classic or YAML)."""
    text = (FLUENT_BIT_DIR / name).read_text()
    if name.endswith(".conf"):
        (value,) = re.findall(r"^\s*Buf_Size\s+(\S+)", text, re.MULTILINE | re.IGNORECASE)
        return size_bytes(value)
    (exec_input,) = [i for i in yaml.safe_load(text)["pipeline"]["inputs"] if i["name"] == "exec"]
    return size_bytes(str(exec_input["buf_size"]))


def flow1_buf_sizes() -> dict[str, int]:
    return {name: buf_size(name) for name in ("harmony-to-s3.conf", "harmony-to-s3.yaml")}


@pytest.fixture(scope="module")
def biggest_alert(tmp_path_factory) -> bytes:
    """The alert of an event just under harmony-alerts' input limit."""
    event = dict(make_events(1, span_secs=60, seed=3)[0], type="phishing")
    event["description"] = ""
    room = MAX_LINE_BYTES - 1 - len(orjson.dumps(event))
    event["description"] = "é" * (room // 2)  # 2 bytes each in UTF-8
    line = orjson.dumps(event) + b"\n"
    assert MAX_LINE_BYTES - 2 <= len(line) <= MAX_LINE_BYTES
    result = run_cli(["harmony-alerts"], line, env={})
    assert result.returncode == 0, result.stderr
    (alert,) = result.stdout_lines
    return alert


def test_buf_size_is_above_the_longest_alert(biggest_alert: bytes) -> None:
    assert len(biggest_alert) > 2 * MAX_LINE_BYTES - 64 * 1024, "the description is kept twice"
    for name, buf_size in flow1_buf_sizes().items():
        assert buf_size > 2 * len(biggest_alert), f"{name}: Buf_Size {buf_size} leaves too little room"
    vector = (REPO_ROOT / "pipelines" / "vector" / "harmony-to-s3.yaml").read_text()
    limit = int(re.search(r"maximum_buffer_size_bytes:\s*(\d+)", vector).group(1))
    assert limit > 2 * len(biggest_alert)


def test_fluent_bit_delivers_the_longest_alert_whole(fluent_bit_path, biggest_alert: bytes, tmp_path: Path) -> None:
    data = tmp_path / "alert.ndjson"
    data.write_bytes(biggest_alert + b"\n")
    buf_size = flow1_buf_sizes()["harmony-to-s3.conf"]
    argv = [fluent_bit_path, "-R", str(FLUENT_BIT_DIR / "parsers.conf"), "-i", "exec"]
    argv += ["-p", f"command=cat {data}", "-p", "parser=harmony_ndjson", "-p", f"buf_size={buf_size}"]
    argv += ["-p", "oneshot=true", "-p", "exit_after_oneshot=true", "-p", "threaded=true"]
    argv += ["-o", "stdout", "-p", "format=json_lines", "-p", "json_date_key=false", "-f", "1"]
    proc = subprocess.run(argv, capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    (record,) = [orjson.loads(line) for line in proc.stdout.splitlines() if line.startswith(b"{")]
    assert record == orjson.loads(biggest_alert)


def test_inventory_and_receipt_lines_fit_the_1m_buffers(tmp_path: Path) -> None:
    """Flow 3 reads aws-discovery with Buf_Size 1M: a record for an instance at EC2's limits —
    50 tags at full length (128-char keys, 256-char values: a 256-char Name), ten SSH users with
    32-char names and 256-char key names — stays far below (a few KB: only selected tags are
    copied). Flow 2's receipts (one short line per object) are tiny by construction."""
    from tests.helpers.discovery import MotoEc2, discover, records

    flows_2_and_3 = ("harmony-chain-to-s3.conf", "harmony-chain-to-s3.yaml", "aws-discovery.conf", "aws-discovery.yaml")
    for name in [*flows_2_and_3, "aws-discovery-http.yaml"]:
        assert buf_size(name) == 1024**2, name
    moto = MotoEc2()
    try:
        tags = {"env": "prod", "Name": "n" * 256}
        for i in range(38):
            tags[f"k{i:02d}".ljust(128, "k")] = "v" * 256
        for i in range(10):  # per-user SSH key tags, each becoming a user in the record
            tags[f"checkpoint_ssh:user{i}".ljust(15 + 32, "u")] = f"key-{i}".ljust(252, "x") + ".pem"
        assert len(tags) == 50
        moto.launch("us-east-1", tags)
        env = {
            "AWS_DISCOVERY_REGIONS": "us-east-1",
            "AWS_DISCOVERY_TAGS": "env=prod",
            "AWS_DISCOVERY_DEFAULT_USER": "ec2-user",
            "AWS_DISCOVERY_DEFAULT_KEY": "default-key",
            "AWS_DISCOVERY_KNOWN_KEYS": ",".join(["default-key"] + [f"key-{i}".ljust(252, "x") for i in range(10)]),
        }
        result = discover(["--once"], moto.endpoint, env)
        assert result.returncode == 0, result.stderr
        (record,) = records(result)
        (line,) = result.stdout_lines
        assert record["op"] == "snapshot"
        assert len(line) < 1024**2 // 8, len(line)
        assert len(record["app"]["users"]) == 10
    finally:
        moto.stop()

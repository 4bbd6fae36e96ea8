"""`aws-discovery report` after real syncs against a moto EC2 estate: the report says exactly what
the emitted records say, shows failing regions since when, never calls AWS, works while a sync
runs, reads format-1 state, and exits 0 / 2 / 1 as documented."""

from __future__ import annotations

import os
import pty
import re
import shutil
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

import orjson
import pytest

from tests.conftest import FIXTURES, command_path, run_cli
from tests.helpers.discovery import (
    FaultProxy,
    MotoEc2,
    discover,
    discover_clean,
    discovery_env,
    records,
    validate_records,
)
from tests.helpers.logs import error_lines
from tests.helpers.schemas import assert_valid

pytestmark = pytest.mark.integration

E1, W1 = "us-east-1", "eu-west-1"
BOTH = f"{E1},{W1}"
SSH = {"checkpoint_ssh:ubuntu": "deploy.pem"}
FORMAT1 = FIXTURES / "aws_discovery" / "inventory-format1.json"
FORMAT1_RECORDS = FIXTURES / "aws_discovery" / "records-format1.ndjson"


def sync(endpoint: str, state_dir: Path, *extra: str, code: int = 0) -> list[dict]:
    args = ["--regions", BOTH, "--tags", "env=prod,team", "--site", "hq", "--once", "--state-dir", str(state_dir)]
    result = discover([*args, *extra], endpoint)
    assert result.returncode == code, result.stderr
    out = records(result)
    validate_records(out)
    return out


def report(state_dir: Path | None, *extra: str, env: dict[str, str] | None = None):
    args = ["aws-discovery", "report", *extra]
    if state_dir is not None:
        args += ["--state-dir", str(state_dir)]
    return run_cli(args, b"", env=env)


def report_json(state_dir: Path) -> dict:
    result = report(state_dir, "--json")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout_lines
    assert len(lines) == 1  # one JSON object
    out = orjson.loads(lines[0])
    assert_valid("discovery-report", out)
    return out


def replay(items: Iterable[dict]) -> dict[str, dict]:
    """The current picture from the NDJSON alone, as a consumer would build it."""
    current: dict[str, dict] = {}
    for rec in items:
        if rec["op"] == "remove":
            current.pop(rec["instance_id"], None)
        else:
            current[rec["instance_id"]] = rec
    return current


def assert_report_matches(out: dict, emitted: list[dict], regions: Iterable[str] = (E1, W1)) -> None:
    current = replay(emitted)
    apps = [r for r in current.values() if r["app"] is not None]
    unconfigured = sorted(
        (r for r in current.values() if r["app"] is None), key=lambda r: (r["region"], r["instance_id"])
    )
    assert out["synced"] == len(apps)
    assert out["by_region"] == {region: sum(r["region"] == region for r in apps) for region in sorted(regions)}
    assert out["apps"] == {
        "ssh": sum(r["app"]["type"] == "ssh" for r in apps),
        "rdp": sum(r["app"]["type"] == "rdp" for r in apps),
    }
    assert out["ssh_users"] == sum(len(r["app"].get("users", ())) for r in apps)
    assert out["unconfigured"] == [
        {k: r[k] for k in ("instance_id", "region", "vpc_id", "name", "reasons")} for r in unconfigured
    ]
    vpcs = Counter((r["region"], r["vpc_id"], r["app"] is not None) for r in current.values())
    assert out["by_vpc"] == [
        {
            "region": region,
            "vpc_id": vpc,
            "synced": vpcs[(region, vpc, True)],
            "unconfigured": vpcs[(region, vpc, False)],
        }
        for region, vpc in sorted({(r["region"], r["vpc_id"]) for r in current.values()})
    ]
    tags = Counter((k, v) for r in current.values() for k, v in r["tags"].items())
    assert [(t["key"], t["value"], t["instances"]) for t in out["tags"]] == sorted(
        (k, v, n) for (k, v), n in tags.items()
    )


def seconds(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def test_report_counts_and_reasons_match_the_emitted_records(moto: MotoEc2, tmp_path) -> None:
    _, subnet = moto.vpc(E1, "10.1.0.0/16")
    web = moto.launch(E1, {"Name": "web", "env": "prod", **SSH}, subnet_id=subnet)[0]["InstanceId"]
    moto.launch(E1, {"Name": "db", "team": "data", "checkpoint_ssh:postgres": "db.pem", **SSH}, subnet_id=subnet)
    bare = moto.launch(E1, {"Name": "batch", "env": "prod"})[0]["InstanceId"]
    moto.launch(W1, {"Name": "ad", "team": "it"}, windows=True)
    moto.launch(W1, {"env": "prod", "checkpoint_ssh:root": "stolen.pem"})
    moto.launch(W1, {"env": "dev", **SSH})  # not selected
    keys = ("--known-keys", "deploy,db")

    emitted = sync(moto.endpoint, tmp_path, *keys)
    out = report_json(tmp_path)
    assert_report_matches(out, emitted)
    assert (out["synced"], out["apps"], out["ssh_users"], len(out["unconfigured"])) == (3, {"ssh": 2, "rdp": 1}, 3, 2)
    assert [(g["reason"], [i["instance_id"] for i in g["instances"]]) for g in out["unconfigured_by_reason"]] == [
        ("no_user", [bare]),
        ("unknown_key", [u["instance_id"] for u in out["unconfigured"] if u["region"] == W1]),
    ]
    assert out["site"] == "hq" and out["cycle"] == 1 and out["failed_regions"] == []
    assert out["last_sync_at"] == emitted[0]["observed_at"] and 0 <= out["last_sync_age_secs"] < 60

    # a second cycle: one added, one fixed by a tag, one terminated, one made unconfigured
    added = moto.launch(W1, {"Name": "api", "env": "prod", **SSH})[0]["InstanceId"]
    moto.ec2(E1).create_tags(Resources=[bare], Tags=[{"Key": "checkpoint_ssh:ec2-user", "Value": "deploy.pem"}])
    moto.ec2(E1).create_tags(Resources=[web], Tags=[{"Key": "checkpoint_ssh:ubuntu", "Value": "other.pem"}])
    gone = [r["instance_id"] for r in emitted if r["name"] == "ad"]
    moto.ec2(W1).terminate_instances(InstanceIds=gone)
    second = sync(moto.endpoint, tmp_path, *keys)
    assert sorted((r["op"], r["instance_id"]) for r in second) == sorted(
        [("add", added), ("add", bare), ("remove", web), ("unconfigured", web), ("remove", gone[0])]
    )
    out = report_json(tmp_path)
    assert_report_matches(out, emitted + second)
    assert out["cycle"] == 2 and out["last_sync_at"] == second[0]["observed_at"]
    assert out["apps"] == {"ssh": 3, "rdp": 0} and [g["reason"] for g in out["unconfigured_by_reason"]] == [
        "unknown_key"
    ]

    piped = report(tmp_path)  # the text form, in a pipe: tab-separated
    assert piped.returncode == 0 and piped.stderr == ""
    text = piped.stdout.decode()
    assert "synced apps\t3 (ssh managed 3 with 4 users, rdp direct 0)" in text
    assert f"{web}\t{E1}\tweb\ttag 'checkpoint_ssh:ubuntu' names key 'other', which is not in --known-keys" in text
    assert "fix: add the key to --known-keys" in text and "Failed regions (last cycle): none" in text
    assert "env=prod\t4\t2\n" in text  # web, batch, api and the stolen-key one; batch and api synced


def test_report_never_calls_aws(moto: MotoEc2, proxy: FaultProxy, tmp_path) -> None:
    moto.launch(E1, {"env": "prod", **SSH})
    sync(proxy.endpoint, tmp_path)
    calls = dict(proxy.calls)
    assert calls  # the sync did go through the proxy
    # no credentials, region or profile at all; only the endpoint, which must stay unused
    env = {"AWS_DISCOVERY_STATE_DIR": str(tmp_path), "AWS_DISCOVERY_ENDPOINT_URL": proxy.endpoint}
    result = discover_clean(["report", "--json"], env)
    assert result.returncode == 0, result.stderr
    out = orjson.loads(result.stdout)
    assert_valid("discovery-report", out)
    assert out["synced"] == 1 and out["by_region"] == {E1: 1, W1: 0}
    assert proxy.calls == calls
    # the sync itself cannot run in that environment: the report really had no AWS to call
    refused = discover_clean(
        ["--regions", E1, "--tags", "env", "--once"], {"AWS_DISCOVERY_ENDPOINT_URL": proxy.endpoint}
    )
    assert refused.returncode == 3 and "no usable AWS credentials" in refused.stderr


def test_failed_region_shows_since_when_and_a_good_cycle_clears_it(moto: MotoEc2, proxy: FaultProxy, tmp_path) -> None:
    moto.launch(E1, {"env": "prod", **SSH})
    moto.launch(W1, {"env": "prod", **SSH})
    first = sync(proxy.endpoint, tmp_path)
    synced_at = first[0]["observed_at"]

    proxy.fail(W1)
    before = time.time()
    sync(proxy.endpoint, tmp_path, "--max-attempts", "1")
    after = time.time()
    out = report_json(tmp_path)
    assert [f["region"] for f in out["failed_regions"]] == [W1]
    failed = out["failed_regions"][0]
    since = failed["since"]
    assert before <= seconds(since) <= after and failed["last_failed_at"] == since
    assert "RequestLimitExceeded" in failed["error"] and "try again later" in failed["error"]
    assert seconds(out["last_sync_at"]) > seconds(synced_at)  # us-east-1 was still read
    assert out["by_region"] == {E1: 1, W1: 1}  # the failed region's app counts as last seen
    text = report(tmp_path).stdout.decode()
    assert f"failed regions\t{W1}\n" in text
    assert re.search(
        rf"^{W1}\t{re.escape(since)} \(\d+ s ago\)\t{re.escape(since)}\tDescribeInstances in {W1}: ", text, re.M
    )

    proxy.fail(W1, 403, "UnauthorizedOperation")
    sync(proxy.endpoint, tmp_path)
    failed = report_json(tmp_path)["failed_regions"]
    assert failed[0]["since"] == since and seconds(failed[0]["last_failed_at"]) > seconds(since)
    assert "access denied" in failed[0]["error"]

    proxy.heal(W1)
    sync(proxy.endpoint, tmp_path)
    out = report_json(tmp_path)
    assert out["failed_regions"] == [] and seconds(out["last_sync_at"]) > seconds(failed[0]["last_failed_at"])
    assert "Failed regions (last cycle): none" in report(tmp_path).stdout.decode()


def test_a_once_cycle_in_which_every_region_fails_is_still_shown(moto: MotoEc2, proxy: FaultProxy, tmp_path) -> None:
    moto.launch(E1, {"env": "prod", **SSH})
    first = sync(proxy.endpoint, tmp_path)
    proxy.fail(E1)
    proxy.fail(W1)
    sync(proxy.endpoint, tmp_path, "--max-attempts", "1", code=75)
    out = report_json(tmp_path)
    at = out["last_cycle_at"]
    assert [(f["region"], f["since"]) for f in out["failed_regions"]] == [(W1, at), (E1, at)]
    assert all("RequestLimitExceeded" in f["error"] for f in out["failed_regions"])
    assert out["last_sync_at"] == first[0]["observed_at"]  # nothing was read since
    assert seconds(out["last_cycle_at"]) > seconds(out["last_sync_at"]) and out["synced"] == 1


def test_report_works_while_the_sync_loop_holds_the_state_dir(moto: MotoEc2, tmp_path) -> None:
    moto.launch(E1, {"env": "prod", **SSH})
    env = {**os.environ, **discovery_env(moto.endpoint), "PYTHONUNBUFFERED": "1"}
    argv = [command_path("aws-discovery"), "--regions", E1, "--tags", "env", "--interval-secs", "1"]
    proc = subprocess.Popen(
        [*argv, "--state-dir", str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    try:
        first = orjson.loads(proc.stdout.readline())
        assert first["op"] == "snapshot"
        deadline = time.monotonic() + 30
        while not (tmp_path / "inventory.json").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        out = report_json(tmp_path)
        assert out["synced"] == 1 and out["by_region"] == {E1: 1}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    assert proc.returncode == 0


def test_format1_state_is_reported_then_rewritten_as_format2_by_the_next_sync(moto: MotoEc2, tmp_path) -> None:
    shutil.copy(FORMAT1, tmp_path / "inventory.json")
    old = orjson.loads(FORMAT1.read_bytes())
    out = report_json(tmp_path)
    assert_report_matches(out, [orjson.loads(line) for line in FORMAT1_RECORDS.read_bytes().splitlines()])
    assert out["last_sync_at"] == old["data"]["written_at"] and out["failed_regions"] == []
    assert out["synced"] == 3 and len(out["unconfigured"]) == 2

    fresh = moto.launch(E1, {"Name": "new", "env": "prod", **SSH})[0]["InstanceId"]
    emitted = sync(moto.endpoint, tmp_path)
    old_apps = sorted(i for i, e in old["data"]["inventory"].items() if e["app"])
    # diffs against the migrated inventory, not a second snapshot
    assert sorted((r["op"], r["instance_id"]) for r in emitted) == sorted(
        [("add", fresh), *(("remove", i) for i in old_apps)]
    )
    assert {r["reasons"][0] for r in emitted if r["op"] == "remove"} == {"instance no longer exists"}
    doc = orjson.loads((tmp_path / "inventory.json").read_bytes())
    assert doc["format_version"] == 2
    assert doc["data"]["regions"] == [E1, W1] and doc["data"]["failed_regions"] == {}
    assert doc["data"]["last_sync_at"] == emitted[0]["observed_at"] and doc["data"]["cycle"] == 2
    out = report_json(tmp_path)
    # the old unconfigured instances no longer exist: they leave the state silently (they never
    # were apps, so no record says so), and the report shows only what this cycle added
    assert_report_matches(out, [r for r in emitted if r["op"] == "add"])
    assert out["synced"] == 1 and out["unconfigured"] == []


def test_no_state_exits_2_with_how_to_run_the_first_sync(tmp_path) -> None:
    result = report(tmp_path / "never")
    assert result.returncode == 2 and result.stdout == b""
    assert result.stderr.count("\n") == 1
    assert error_lines(result.stderr) == [
        f"no inventory in {tmp_path / 'never'}: aws-discovery has not synced there yet — run the first "
        f"sync: aws-discovery --regions <regions> --tags <tags> --site <site> --state-dir {tmp_path / 'never'} --once"
    ]
    assert not (tmp_path / "never").exists()  # the report creates nothing
    before = run_cli(["aws-discovery", "--state-dir", str(tmp_path / "never"), "report"])  # the group's option
    assert before.returncode == 2 and error_lines(before.stderr) == error_lines(result.stderr)
    shared = report(None, env={"HARMONY_PIPES_STATE_DIR": str(tmp_path)})  # the shared root's discovery/
    assert shared.returncode == 2 and f"no inventory in {tmp_path / 'discovery'}:" in shared.stderr
    unset = report(None)
    assert unset.returncode == 2 and unset.stderr.count("\n") == 1
    assert error_lines(unset.stderr)[0].startswith("no state directory") and "--state-dir" in unset.stderr


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"format_version": 2, "data": {"inventory": {"i-1": ', "is corrupt"),
        (b"[1, 2]", "is corrupt (not a versioned state document)"),
        (b'{"format_version": 9, "data": {"inventory": {}}}', "has format version 9, this version reads 1 to 2"),
        (b'{"format_version": 1, "data": {"at_ms": 5}}', "is not an aws-discovery inventory"),
    ],
)
def test_unreadable_state_exits_1_with_one_line(tmp_path, content: bytes, message: str) -> None:
    (tmp_path / "inventory.json").write_bytes(content)
    for extra in ((), ("--json",)):
        result = report(tmp_path, *extra)
        assert result.returncode == 1 and result.stdout == b""
        assert error_lines(result.stderr)[0].startswith(f"state file {tmp_path / 'inventory.json'} ")
        assert message in result.stderr and " — " in result.stderr
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_a_state_file_that_cannot_be_read_exits_1(tmp_path) -> None:
    (tmp_path / "inventory.json").mkdir()  # read() fails with an OSError (EISDIR)
    result = report(tmp_path)
    assert result.returncode == 1 and result.stdout == b""
    assert error_lines(result.stderr)[0].startswith(
        f"cannot read state file {tmp_path / 'inventory.json'}: Is a directory — "
    )
    assert result.stderr.count("\n") == 1


def test_terminal_gets_aligned_columns_and_a_pipe_gets_tabs(tmp_path) -> None:
    shutil.copy(FORMAT1, tmp_path / "inventory.json")
    argv = [command_path("aws-discovery"), "report", "--state-dir", str(tmp_path)]
    master, slave = pty.openpty()
    proc = subprocess.Popen(argv, stdout=slave, stderr=subprocess.PIPE)
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    assert proc.wait(timeout=30) == 0 and proc.stderr.read() == b""
    terminal = b"".join(chunks).decode().replace("\r\n", "\n").splitlines()
    piped = report(tmp_path).stdout.decode().splitlines()

    assert len(terminal) == len(piped) and not any("\t" in line for line in terminal)
    assert sum("\t" in line for line in piped) > 20
    # the same fields, aligned with spaces instead of separated by tabs
    for shown, plain in zip(terminal, piped, strict=True):
        assert re.split(r" {2,}", shown.strip()) == plain.split("\t") if shown.strip() else not plain
    start = terminal.index("By VPC") + 1
    vpc_rows = terminal[start : start + 4]
    assert vpc_rows[0] == "  REGION     VPC                    SYNCED  UNCONFIGURED"
    starts = [[m.start() for m in re.finditer(r"(?<!\S)\S", row)] for row in vpc_rows]
    assert starts == [[2, 13, 36, 44]] * 4  # every cell of a column starts at the same offset
    assert "  us-east-1  vpc-0f8ced21aec6c1da7  2       0" in vpc_rows


def big_state(state_dir: Path, instances: int = 20000) -> None:
    """A format-1 state of many unconfigured instances: a report far larger than a pipe buffer."""
    entry = {"region": E1, "vpc_id": "vpc-1", "name": None, "platform": "linux", "tags": {"env": "prod"}, "app": None}
    reasons = ["no checkpoint_ssh:<user> tag and no --default-user/--default-key"]
    inventory = {f"i-{n:017x}": {**entry, "instance_id": f"i-{n:017x}", "reasons": reasons} for n in range(instances)}
    data = {"site": "hq", "cycle": 1, "written_at": "2026-12-04T16:51:07.520Z", "inventory": inventory}
    (state_dir / "inventory.json").write_bytes(orjson.dumps({"format_version": 1, "data": data}))


def test_report_ends_quietly_when_the_reader_stops_early(tmp_path) -> None:
    """`report | head` must not print a traceback: a large estate is written into a closed pipe."""
    big_state(tmp_path)
    script = f"set -o pipefail; {command_path('aws-discovery')} report --state-dir {tmp_path} | head -n 1"
    proc = subprocess.run(["bash", "-c", script], capture_output=True, timeout=60)
    assert proc.stdout == b"aws-discovery report: site hq\n"
    assert proc.returncode == 0 and proc.stderr == b""


def test_report_ends_quietly_when_its_terminal_goes_away(tmp_path) -> None:
    """A terminal closed before the report is written (EIO, e.g. a dropped ssh session) is not
    an internal error."""
    shutil.copy(FORMAT1, tmp_path / "inventory.json")
    master, slave = pty.openpty()
    argv = [command_path("aws-discovery"), "report", "--state-dir", str(tmp_path)]
    proc = subprocess.Popen(argv, stdout=slave, stderr=subprocess.PIPE)
    os.close(slave)
    os.close(master)  # gone before the command (still starting up) writes its first line
    assert proc.wait(timeout=60) == 0
    assert proc.stderr.read() == b""

"""harmony-events against hec-emulator over real HTTP on 127.0.0.1: every event exactly once
whatever the gateway does (faults, both scroll styles, token loss mid-scroll, invalid scrolls,
429 with Retry-After, a truncating cap, late events), kill -9 / SIGTERM and restart, errors with
their exit codes, the access key kept secret, and the pipe into harmony-alerts."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import threading
import time
from bisect import bisect_left
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from tests.conftest import command_path, free_port, run_cli
from tests.helpers.emulator import start_emulator
from tests.helpers.events import ACCESS_KEY, collector_env, ids_of, make_events, write_events
from tests.helpers.logs import error_lines

pytestmark = pytest.mark.integration

SPAN_SECS = 3000
EVENTS = make_events(1200, span_secs=SPAN_SECS, seed=5)
ALL_IDS = [e["eventId"] for e in EVENTS]
DEFAULT_ALERT_TYPES = {"phishing", "malware", "alert", "dlp"}


@pytest.fixture
def events_file(tmp_path: Path) -> Path:
    """The tenant as of now (the same seeded ids as EVENTS): generated at import, the events would
    drift against the collector's clock-aligned windows the later a test runs."""
    return write_events(tmp_path / "events.ndjson", make_events(1200, span_secs=SPAN_SECS, seed=5))


def collect(url: str, *args: str, **env: str):
    return run_cli(["harmony-events", "--once", "--start", "2h", *args], env=collector_env(url, **env))


def assert_each_once(stdout: bytes, expected: list[str] = ALL_IDS) -> None:
    ids = ids_of(stdout)
    dupes = [i for i, n in Counter(ids).items() if n > 1]
    assert not dupes, f"{len(dupes)} events emitted twice"
    assert set(ids) == set(expected), f"missing {len(set(expected) - set(ids))}, extra {len(set(ids) - set(expected))}"


def most_events_in_any(window_secs: float, events: list[dict] = EVENTS) -> int:
    """The most events any `window_secs`-long window can hold: a bound on one window's re-emission."""
    times = sorted(datetime.fromisoformat(e["eventCreated"]).timestamp() for e in events)
    return max(bisect_left(times, t + window_secs) - i for i, t in enumerate(times))


# -- every event exactly once ----------------------------------------------------------------------


@pytest.mark.parametrize("scroll_style", ["null", "constant-empty-page"])
def test_every_fault_on_still_gives_every_event_exactly_once(events_file, scroll_style) -> None:
    faults = [
        "--page-size", "40", "--scroll-style", scroll_style,
        "--revoke-token-every", "9", "--invalid-scroll-every", "5",
        "--rate-limit-every", "7", "--retry-after-secs", "0", "--error-every", "11",
        "--max-records-per-query", "300", "--delay-ms", "1",
    ]  # fmt: skip
    with start_emulator("--events", str(events_file), *faults) as emu:
        result = collect(emu.url, "--max-records-per-window", "300", "--window-secs", "1800")
        served = emu.stats()
    assert result.returncode == 0, result.stderr
    assert_each_once(result.stdout)
    stats = result.stats
    assert stats["events"] == stats["records_out"] == len(EVENTS)
    # every fault really happened, and the collector says how it got past each
    assert served["rate_limited"] > 0 and served["errors"] > 0
    assert stats["retries"] == served["rate_limited"] + served["errors"]  # each backed off once
    assert served["unauthorized"] > 0 and stats["token_refreshes"] == served["unauthorized"]
    # restarts: one per Invalid scroll, plus one per 5xx that struck a scroll page (never re-sent)
    assert served["invalid_scroll"] > 0 and stats["scroll_restarts"] >= served["invalid_scroll"]
    assert served["truncated_queries"] > 0 and stats["windows_split"] > 0
    if scroll_style == "constant-empty-page":
        assert served["empty_pages"] > 0
    assert "Traceback" not in result.stderr


def test_token_revoked_mid_scroll_is_refreshed_and_the_request_retried_once(events_file) -> None:
    with start_emulator("--events", str(events_file), "--page-size", "25", "--revoke-token-every", "4") as emu:
        result = collect(emu.url)
        served = emu.stats()
    assert result.returncode == 0, result.stderr
    assert_each_once(result.stdout)
    assert served["scroll_requests"] > served["unauthorized"] > 5  # most refreshes fell inside a scroll
    assert result.stats["token_refreshes"] == served["unauthorized"]
    assert served["tokens_issued"] == served["unauthorized"] + 1
    # each 401 cost exactly one repeated request: pages + 401s (+ nothing else) = API requests
    assert served["api_requests"] == served["pages"] + served["unauthorized"]


def test_token_ttl_shorter_than_a_scroll(events_file) -> None:
    args = ["--page-size", "20", "--token-ttl-secs", "0.4", "--delay-ms", "30"]
    with start_emulator("--events", str(events_file), *args) as emu:
        result = collect(emu.url)
        served = emu.stats()
    assert result.returncode == 0, result.stderr
    assert_each_once(result.stdout)
    assert served["tokens_issued"] > 3  # the collection (~60 pages x 30 ms) outlived many tokens


def test_invalid_scroll_restarts_the_window_and_never_reuses_the_stale_id(events_file) -> None:
    with start_emulator("--events", str(events_file), "--page-size", "30", "--invalid-scroll-every", "2") as emu:
        result = collect(emu.url, "--window-secs", "600")  # six paged windows: three scrolls doomed
        served = emu.stats()
    assert result.returncode == 0, result.stderr
    assert_each_once(result.stdout)
    # a reused stale id would be answered 400 again: one 400 per restart proves none was reused
    assert served["invalid_scroll"] == result.stats["scroll_restarts"] > 0


@pytest.mark.parametrize(("style", "secs"), [("seconds", "1"), ("http-date", "2")])
def test_retry_after_is_honoured(events_file, style, secs) -> None:
    """Delta seconds, or an HTTP date (whole seconds: `now + 2` is 1-2 s away when it arrives)."""
    args = ["--page-size", "400", "--rate-limit-every", "2", "--retry-after-secs", secs, "--retry-after-style", style]
    with start_emulator("--events", str(events_file), *args) as emu:
        began = time.monotonic()
        result = collect(emu.url, HARMONY_RETRY_BASE_DELAY_SECS="0")
        elapsed = time.monotonic() - began
        served = emu.stats()
    assert result.returncode == 0, result.stderr
    assert_each_once(result.stdout)
    assert served["rate_limited"] >= 2 and result.stats["retries"] == served["rate_limited"]
    assert elapsed >= served["rate_limited"] * 1.0  # with a zero backoff, only Retry-After made it wait


@pytest.mark.parametrize(
    "fault",
    [["--reset-every", "5"], ["--slow-every", "5", "--slow-ms", "1200"]],
    ids=["answer-lost-to-a-reset", "answer-later-than-the-timeout"],
)
def test_a_lost_answer_mid_scroll_restarts_the_window_instead_of_skipping_a_page(events_file, fault) -> None:
    """The gateway processed the page request (its scroll moved on) but the answer never arrived:
    re-sending the same scrollId would return the NEXT page and lose this one silently. The
    collector restarts the window instead (the reference: clear the scroll on any error path)."""
    # a 300 s window holds at most 120 events: its 4 pages of 30 fit between two lost answers
    assert most_events_in_any(300) <= 120
    with start_emulator("--events", str(events_file), "--page-size", "30", *fault) as emu:
        result = collect(emu.url, "--window-secs", "300", "--timeout-secs", "0.6")
        served = emu.stats()
    assert result.returncode == 0, result.stderr
    assert_each_once(result.stdout)
    lost = served["connection_resets"] + served["slow_answers"]
    assert lost > 3 and result.stats["retries"] >= lost
    assert result.stats["scroll_restarts"] > 0


def test_a_gateway_slower_than_the_timeout_is_retried_then_exits_75(events_file) -> None:
    with start_emulator("--events", str(events_file), "--delay-ms", "1500") as emu:
        result = collect(emu.url, "--timeout-secs", "0.3", "--max-retries", "1")
    assert result.returncode == 75, result.stderr
    assert "no answer from" in result.stderr and "within 0.3 s" in result.stderr
    assert result.stats["retries"] == 1 and "Traceback" not in result.stderr


def test_interval_mode_logs_a_failed_cycle_and_catches_up_in_the_next(events_file) -> None:
    """No retries at all, every 5th API request a 5xx: cycles fail, each says so and is retried
    by the next cycle from the same cursor, so every event still arrives once. (No window needs
    more than 2 pages of 300, so some cycle always gets through the next one.)"""
    with start_emulator("--events", str(events_file), "--page-size", "300", "--error-every", "5") as emu:
        result = _run_interval(emu.url, 5, "--max-retries", "0", "--window-secs", "600")
    assert result.returncode == 0, result.stderr.decode()
    assert_each_once(result.stdout)
    assert b"trying again in 0.5 s" in result.stderr


def test_a_restart_re_reads_the_overlap_but_emits_only_what_is_new(events_file, tmp_path) -> None:
    state = tmp_path / "state"
    args = ["--state-dir", str(state), "--overlap-secs", "600"]
    with start_emulator("--events", str(events_file), "--page-size", "200") as emu:
        first = collect(emu.url, *args)
        late = make_events(3, span_secs=60, seed=99)  # created in the last minute: inside the overlap
        emu.add_events(late)
        second = collect(emu.url, *args)
        third = collect(emu.url, *args)
    assert first.returncode == second.returncode == third.returncode == 0
    assert_each_once(first.stdout)
    assert ids_of(second.stdout) == [e["eventId"] for e in late]
    assert second.stats["duplicates_skipped"] > 0  # the overlap was read again, its events not re-emitted
    assert third.stdout == b""


def test_rate_limited_past_the_retry_budget_exits_75_in_once_mode(events_file) -> None:
    with start_emulator("--events", str(events_file), "--rate-limit-every", "1", "--retry-after-secs", "0") as emu:
        result = collect(emu.url, "--max-retries", "2")
        served = emu.stats()
    assert result.returncode == 75, result.stderr
    assert served["rate_limited"] == 3  # the first try and 2 retries
    errors = error_lines(result.stderr)
    assert len(errors) == 1 and "rate limited" in errors[0] and "retry later" in errors[0]
    assert "Traceback" not in result.stderr and result.stdout == b""


def test_server_errors_past_the_retry_budget_exit_75_and_keep_the_cursor(events_file, tmp_path) -> None:
    state = tmp_path / "state"
    port = str(free_port())  # the cursor belongs to one base URL: the healthy gateway takes the same port
    with start_emulator("--events", str(events_file), "--error-every", "1", port=port) as emu:
        failed = collect(emu.url, "--max-retries", "1", "--state-dir", str(state))
    assert failed.returncode == 75 and "still failing after 2 attempts" in failed.stderr
    saved = orjson.loads((state / "harmony-events.cursor.json").read_bytes())["data"]
    assert failed.stdout == b"" and saved["cursor_us"] == saved["origin_us"] and not saved["seen"]
    with start_emulator("--events", str(events_file), "--page-size", "100", port=port) as emu:
        again = collect(emu.url, "--state-dir", str(state))
    assert again.returncode == 0, again.stderr
    assert_each_once(again.stdout)  # the failed run moved no cursor past unread data


def test_a_truncating_gateway_loses_nothing(events_file) -> None:
    args = ["--page-size", "50", "--max-records-per-query", "200"]
    with start_emulator("--events", str(events_file), *args) as emu:
        result = collect(emu.url, "--max-records-per-window", "200")
        served = emu.stats()
    assert result.returncode == 0, result.stderr
    assert_each_once(result.stdout)
    assert result.stats["windows_split"] > 0 and served["truncated_queries"] > 0


def test_a_dense_tenant_is_read_about_once(tmp_path) -> None:
    """6,000 events in the last hour, a 500-event cap at the gateway and per window: the first
    window hits the cap, is split at its last event (the events came oldest first), and the rest
    is read in windows sized from the density: every event read about once, none lost. A second
    run starts from the density remembered in the cursor and hits the cap no more."""
    now = datetime.now(UTC)
    events = make_events(6000, span_secs=3500, seed=21, end=now - timedelta(seconds=2))
    events_file = write_events(tmp_path / "events.ndjson", events)
    state = tmp_path / "state"
    args = ["--page-size", "50", "--max-records-per-query", "500"]
    with start_emulator("--events", str(events_file), *args) as emu:
        result = collect(emu.url, "--max-records-per-window", "500", "--state-dir", str(state))
        served = emu.stats()
        cursor = orjson.loads((state / "harmony-events.cursor.json").read_bytes())["data"]
        later = events_after(now, 60, seed=22)
        emu.add_events(later)
        again = collect(emu.url, "--max-records-per-window", "500", "--state-dir", str(state))
    assert result.returncode == 0, result.stderr
    assert_each_once(result.stdout, [e["eventId"] for e in events])
    assert served["events_served"] <= 1.10 * len(events), served
    assert served["truncated_queries"] == 1 and result.stats["windows_split"] == 1
    assert 1.0 < cursor["density_per_sec"] < 4.0  # ~1.7 events/s
    assert again.returncode == 0, again.stderr
    assert_each_once(again.stdout, [e["eventId"] for e in later])
    assert again.stats["windows_split"] == 0  # planned from the remembered density


def events_after(moment: datetime, count: int, seed: int) -> list[dict]:
    """`count` late events: created in the second before `moment - 0.5 s` (after the events that
    end at `moment - 2 s`, before any collection that starts after `moment`), added later."""
    return make_events(count, span_secs=1.0, seed=seed, end=moment - timedelta(seconds=0.5))


def test_a_truncating_gateway_above_the_window_cap_would_lose_events(events_file) -> None:
    """The control for the test above: a window cap above the gateway's cap cannot see truncation."""
    with start_emulator("--events", str(events_file), "--max-records-per-query", "200") as emu:
        result = collect(emu.url, "--max-records-per-window", "10000")
    assert result.returncode == 0
    assert len(ids_of(result.stdout)) < len(EVENTS)


# -- distinct events that share an eventId ------------------------------------------------------------


def test_two_detections_sharing_an_event_id_both_come_out_and_a_re_read_repeats_neither(tmp_path) -> None:
    """The public fixture's shape: one email, a spam event (severity 2) and a Microsoft
    suspicious_phishing event (severity 3) created apart, one eventId (== entityId). Both are
    distinct events; a second run re-reading them all (an overlap of an hour) emits nothing twice."""
    now = datetime.now(UTC)
    pair_id = "4134abcdefabcdefabcdef120123456789de"
    spam = {
        "eventId": pair_id, "customerId": "exampletest", "saas": "office365_emails", "entityId": pair_id,
        "state": "remediated", "type": "spam", "confidenceIndicator": "malicious",
        "eventCreated": (now - timedelta(minutes=50)).isoformat(), "severity": "2",
        "description": "Spam attempt detected in an email from external@example.com - 'Re: In vino veritas' "
        "(user@example.com's mailbox)",
        "data": "", "additionalData": None, "availableEventActions": None, "actions": [],
        "senderAddress": "external@example.com", "entityLink": "https://portal.checkpoint.com/x",
    }  # fmt: skip
    microsoft = dict(
        spam,
        type="suspicious_phishing",
        confidenceIndicator="suspicious_phishing",
        eventCreated=(now - timedelta(minutes=20)).isoformat(),
        severity="3",
        description="Microsoft has detected suspicious_phishing in an email from example.com - 'In vino veritas' "
        "(user@example.com's mailbox)",
        senderAddress="example.com",
    )
    events = [*make_events(300, span_secs=3000, seed=11, end=now - timedelta(seconds=2)), spam, microsoft]
    events_file = write_events(tmp_path / "events.ndjson", events)
    state = tmp_path / "state"
    with start_emulator("--events", str(events_file)) as emu:
        first = collect(emu.url, "--state-dir", str(state), "--overlap-secs", "3600")
        served_first = emu.stats()["events_served"]
        again = collect(emu.url, "--state-dir", str(state), "--overlap-secs", "3600")
        served_again = emu.stats()["events_served"] - served_first
    assert first.returncode == 0, first.stderr
    written = [orjson.loads(line) for line in first.stdout.splitlines()]
    pair = sorted((e["type"], e["severity"]) for e in written if e["eventId"] == pair_id)
    assert pair == [("spam", "2"), ("suspicious_phishing", "3")]
    assert len(written) == len(events) and first.stats["duplicates_skipped"] == 0
    assert again.returncode == 0, again.stderr
    assert again.stdout == b""  # the overlap re-read everything and wrote none of it again
    assert served_again >= len(events) and again.stats["duplicates_skipped"] == served_again


# -- late events and the overlap -------------------------------------------------------------------


class Drained:
    """A running collector whose stdout and stderr are read all along (a full pipe would block it)."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [command_path("harmony-events"), *args],
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self._out: list[bytes] = []
        self._err: list[bytes] = []
        self._readers = [
            threading.Thread(target=lambda s=stream, c=chunks: c.extend(iter(lambda: s.read(65536), b"")))
            for stream, chunks in ((self.proc.stdout, self._out), (self.proc.stderr, self._err))
        ]
        for reader in self._readers:
            reader.start()

    def stop(self, sig: int) -> subprocess.CompletedProcess[bytes]:
        self.proc.send_signal(sig)
        self.proc.wait(timeout=30)
        for reader in self._readers:
            reader.join(10)
        return subprocess.CompletedProcess(
            self.proc.args, self.proc.returncode, b"".join(self._out), b"".join(self._err)
        )


def _run_interval(url: str, secs: float, *args: str) -> subprocess.CompletedProcess[bytes]:
    running = Drained(["--start", "2h", "--interval-secs", "0.5", *args], collector_env(url))
    time.sleep(secs)
    return running.stop(signal.SIGTERM)


@pytest.mark.parametrize(("overlap_secs", "late_found"), [("300", True), ("0", False)])
def test_late_events_inside_the_overlap_are_collected_once(events_file, overlap_secs, late_found) -> None:
    late = ["--late-events", "15", "--late-after-secs", "1.5", "--late-lag-secs", "90"]
    with start_emulator("--events", str(events_file), "--page-size", "200", *late) as emu:
        result = _run_interval(emu.url, 4.5, "--overlap-secs", overlap_secs)
        served = emu.stats()
    assert result.returncode == 0, result.stderr.decode()
    assert served["late_inserted"] == 15
    ids = ids_of(result.stdout)
    late_ids = [i for i in ids if i not in set(ALL_IDS)]
    assert not [i for i, n in Counter(ids).items() if n > 1]  # the overlap is re-read, never re-emitted
    assert set(ALL_IDS) <= set(ids)
    assert len(late_ids) == (15 if late_found else 0)  # without the overlap they are lost: the control


# -- crashes, stops and restarts -------------------------------------------------------------------


def test_kill_9_at_random_moments_then_restart_loses_nothing(events_file, tmp_path) -> None:
    """Three kill -9s at random points of one slow collection, then a run to the end, all on one
    state dir: the union is every event; repeats come only from the window open at each kill."""
    window_secs = 120
    bound_per_kill = most_events_in_any(window_secs)
    state = tmp_path / "state"
    start = datetime.fromisoformat(EVENTS[0]["eventCreated"]).timestamp() - 1
    start_iso = datetime.fromtimestamp(start).astimezone().isoformat()
    args = ["--once", "--start", start_iso, "--window-secs", str(window_secs), "--state-dir", str(state)]
    rng = random.Random(int(os.environ.get("HARMONY_TEST_SEED", "17")))
    killed: list[list[str]] = []
    with start_emulator("--events", str(events_file), "--page-size", "10", "--delay-ms", "40") as emu:
        for _ in range(3):
            running = Drained(args, collector_env(emu.url))
            time.sleep(rng.uniform(0.5, 1.2))  # the whole collection takes about 6 s
            result = running.stop(signal.SIGKILL)
            assert result.returncode == -signal.SIGKILL  # it was still collecting when killed
            complete_lines = result.stdout[: result.stdout.rfind(b"\n") + 1]
            killed.append(ids_of(complete_lines))
        final = run_cli(["harmony-events", *args], env=collector_env(emu.url))
    assert final.returncode == 0, final.stderr
    last = ids_of(final.stdout)
    assert sum(map(len, killed)) > 0 and len(last) < len(EVENTS)  # the kills came mid-way; the end resumed
    union = [i for ids in [*killed, last] for i in ids]
    assert set(union) == set(ALL_IDS)
    repeats = len(union) - len(set(union))
    assert repeats <= 3 * bound_per_kill, (repeats, bound_per_kill)


def test_sigterm_mid_scroll_saves_no_cursor_past_unread_events(events_file, tmp_path) -> None:
    """SIGTERM while a window's scroll is half read: exit 0, and the restart reads that window
    again instead of starting after it."""
    state = tmp_path / "state"
    args = ["--once", "--start", "2h", "--window-secs", "3600", "--state-dir", str(state)]
    with start_emulator("--events", str(events_file), "--page-size", "20", "--delay-ms", "20") as emu:
        running = Drained(args, collector_env(emu.url))
        time.sleep(0.8)
        stopped = running.stop(signal.SIGTERM)
        second = run_cli(["harmony-events", *args], env=collector_env(emu.url))
    assert stopped.returncode == 0, stopped.stderr.decode()
    assert b"stopped by SIGTERM" in stopped.stderr
    first = ids_of(stopped.stdout)
    assert 0 < len(first) < len(EVENTS)  # 1200 events in one window of 60 pages: stopped inside it
    assert second.returncode == 0, second.stderr
    assert not set(first) & set(ids_of(second.stdout))  # the emitted ids were saved with the stop
    assert sorted(first + ids_of(second.stdout)) == sorted(ALL_IDS)


# -- errors ----------------------------------------------------------------------------------------


def test_wrong_credentials_exit_3_with_one_line(events_file) -> None:
    with start_emulator("--events", str(events_file)) as emu:
        result = collect(emu.url, HARMONY_ACCESS_KEY="not-the-key")
    assert result.returncode == 3
    errors = error_lines(result.stderr)
    assert len(errors) == 1, result.stderr
    assert "Invalid client credentials" in errors[0] and "HARMONY_ACCESS_KEY" in errors[0]
    assert "Traceback" not in result.stderr and result.stdout == b""


@pytest.mark.parametrize("mode", [["--once"], ["--interval-secs", "1"]])
def test_wrong_base_url_path_exits_4_in_both_modes(events_file, mode) -> None:
    with start_emulator("--events", str(events_file)) as emu:
        result = run_cli(
            ["harmony-events", *mode, "--start", "1h"], env=collector_env(emu.url + "/not-the-gateway"), timeout_secs=30
        )
    assert result.returncode == 4, result.stderr
    assert "HTTP 404" in result.stderr and "--region" in result.stderr and "Traceback" not in result.stderr


def test_the_access_key_never_appears_in_argv_stderr_or_state(events_file, tmp_path) -> None:
    state = tmp_path / "state"
    key_file = tmp_path / "key"
    key_file.write_text(ACCESS_KEY + "\n")
    env = {**os.environ, **collector_env("")}
    env.pop("HARMONY_ACCESS_KEY")
    with start_emulator("--events", str(events_file), "--page-size", "50", "--delay-ms", "20") as emu:
        env["HARMONY_BASE_URL"] = emu.url
        argv = [command_path("harmony-events"), "--once", "--start", "2h", "--access-key-file", str(key_file)]
        argv += ["--state-dir", str(state), "--log-format", "json", "--stats-interval-secs", "0.2"]
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(0.5)
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes()
        out, err = proc.communicate(timeout=60)
        wrong = run_cli(["harmony-events", "--once"], env=collector_env(emu.url, HARMONY_ACCESS_KEY=ACCESS_KEY + "x"))
    assert proc.returncode == 0, err.decode()
    assert len(ids_of(out)) == len(EVENTS)
    secret = ACCESS_KEY.encode()
    assert secret not in cmdline and secret not in err
    assert ACCESS_KEY not in wrong.stderr and wrong.returncode == 3
    files = [p for p in state.rglob("*") if p.is_file()]
    assert files and all(secret not in p.read_bytes() for p in files)


def test_subcommand_test_passes_and_names_each_failure_with_its_fix(events_file) -> None:
    with start_emulator("--events", str(events_file)) as emu:
        ok = run_cli(["harmony-events", "test"], env=collector_env(emu.url))
        bad_key = run_cli(["harmony-events", "test"], env=collector_env(emu.url, HARMONY_ACCESS_KEY="nope"))
        wrong_path = run_cli(["harmony-events", "test"], env=collector_env(emu.url + "/x"))
    with start_emulator("--events", str(events_file), "--error-every", "1", "--error-codes", "403") as emu:
        forbidden = run_cli(["harmony-events", "test"], env=collector_env(emu.url))
    with start_emulator("--events", str(events_file), "--rate-limit-every", "1", "--retry-after-secs", "0") as emu:
        limited = run_cli(["harmony-events", "test"], env=collector_env(emu.url))
    with start_emulator("--events", str(events_file), "--error-every", "1", "--error-codes", "400") as emu:
        bad_request = run_cli(["harmony-events", "test"], env=collector_env(emu.url))
    assert ok.returncode == 0, ok.stderr
    assert "all checks passed" in ok.stdout.decode() + ok.stderr
    for result, code, fix in [
        (bad_key, 3, "HARMONY_ACCESS_KEY"),
        (wrong_path, 4, "--region"),
        (forbidden, 3, "role allowed to read security events"),
        (limited, 75, "retry later"),
        (bad_request, 2, "check the configuration"),
    ]:
        text = result.stdout.decode() + result.stderr
        assert result.returncode == code, text
        assert "FAIL" in text and fix in text and "Traceback" not in text


# -- the pipe --------------------------------------------------------------------------------------


def test_harmony_events_once_piped_into_harmony_alerts(events_file) -> None:
    with start_emulator("--events", str(events_file), "--page-size", "100") as emu:
        env = {**os.environ, **collector_env(emu.url)}
        events_cmd, alerts_cmd = command_path("harmony-events"), command_path("harmony-alerts")
        script = f"set -o pipefail; '{events_cmd}' --once --start 2h | '{alerts_cmd}'"
        proc = subprocess.run(["bash", "-c", script], env=env, capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    alerts = [orjson.loads(line) for line in proc.stdout.splitlines()]
    expected = {e["eventId"] for e in EVENTS if e["type"] in DEFAULT_ALERT_TYPES or int(e["severity"]) >= 4}
    assert [a["event_id"] for a in alerts if a["event_id"] in expected] == [a["event_id"] for a in alerts]
    assert {a["event_id"] for a in alerts} == expected and len(alerts) == len(expected)
    assert all(a["msg_class"] == "checkpoint_harmony_security_event" for a in alerts)
    stats_lines = [line for line in proc.stderr.decode().splitlines() if line.startswith('{"stats"')]
    assert len(stats_lines) == 2  # one per command

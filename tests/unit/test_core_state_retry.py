"""State files (atomic, versioned, private, locked) and the backoff helper."""

from __future__ import annotations

import stat
from email.utils import formatdate

import pytest

from harmony_pipes._core.errors import ConfigError, ExitCode, PipesError
from harmony_pipes._core.retry import Backoff, parse_retry_after
from harmony_pipes._core.state import StateDir


def test_state_round_trip_is_versioned_and_private(tmp_path) -> None:
    state = StateDir(tmp_path / "state")
    state.write_json("cursor.json", {"at_ms": 123}, format_version=1)
    assert state.read_json("cursor.json", format_version=1) == {"at_ms": 123}
    assert stat.S_IMODE((tmp_path / "state").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "state" / "cursor.json").stat().st_mode) == 0o600
    assert not list((tmp_path / "state").glob(".*.tmp"))
    state.close()


def test_newer_format_is_refused_not_misread(tmp_path) -> None:
    with StateDir(tmp_path) as state:
        state.write_json("cursor.json", {"at_ms": 1}, format_version=2)
        with pytest.raises(ConfigError) as info:
            state.read_json("cursor.json", format_version=1)
    assert info.value.exit_code == ExitCode.USAGE
    assert "format version 2" in info.value.one_line()


def test_missing_file_reads_as_none(tmp_path) -> None:
    with StateDir(tmp_path) as state:
        assert state.read_json("absent.json", format_version=1) is None


def test_second_instance_cannot_share_a_state_dir(tmp_path) -> None:
    first = StateDir(tmp_path)
    with pytest.raises(ConfigError) as info:
        StateDir(tmp_path)
    assert "in use by another running instance" in info.value.message
    first.close()
    StateDir(tmp_path).close()  # free again once the first one closed


def test_error_line_is_one_line_with_the_fix() -> None:
    err = PipesError("cannot reach\nthe endpoint", "check --base-url")
    assert err.one_line() == "Error: cannot reach the endpoint — check --base-url"


@pytest.mark.parametrize("attempt", range(6))
def test_full_jitter_stays_below_the_exponential_ceiling(attempt: int) -> None:
    backoff = Backoff(base_delay_secs=0.5, max_delay_secs=4, max_retries=6, rng=lambda: 0.999)
    delay = backoff.delay_secs(attempt)
    assert delay is not None
    assert delay <= min(4, 0.5 * 2**attempt)
    assert delay >= 0.99 * min(4, 0.5 * 2**attempt)


def test_backoff_honours_retry_after_and_gives_up() -> None:
    backoff = Backoff(max_delay_secs=30, max_retries=2, rng=lambda: 0.0)
    assert backoff.delay_secs(0, retry_after_secs=7) == 7
    assert backoff.delay_secs(1, retry_after_secs=90) == 30  # capped
    assert backoff.delay_secs(2) is None


def test_retry_after_parses_seconds_and_http_dates() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after("12", now) == 12
    assert parse_retry_after(formatdate(now + 30, usegmt=True), now) == pytest.approx(30, abs=1)
    assert parse_retry_after(formatdate(now - 30, usegmt=True), now) == 0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None

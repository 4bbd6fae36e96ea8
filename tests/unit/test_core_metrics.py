"""The health verdict and the small parsers of _core/metrics.py, with plain data and a fake clock."""

from __future__ import annotations

from pathlib import Path

import pytest

from harmony_pipes._core.errors import AuthError, ConfigError, TempFailError, UnreachableError
from harmony_pipes._core.metrics import STALE_AFTER_INTERVALS, Health, error_kind, parse_addr, textfile_path


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_failed_cycle_is_unhealthy_until_a_good_one() -> None:
    health = Health(Clock())
    assert health.verdict() == (True, "")
    health.cycle_failed(AuthError("Harmony refused the key", "check HARMONY_ACCESS_KEY"))
    healthy, reason = health.verdict()
    assert not healthy
    assert reason == "last cycle failed: Error: Harmony refused the key — check HARMONY_ACCESS_KEY"
    assert health.errors == {"auth": 1}
    health.cycle_ok()
    assert health.verdict() == (True, "")
    assert health.errors == {"auth": 1}, "a good cycle clears the verdict, not the count"


def test_the_same_error_is_recorded_once() -> None:
    """A loop records its failure and re-raises; the CLI funnel sees the same exception again."""
    health = Health(Clock())
    error = UnreachableError("cannot reach the gateway")
    health.cycle_failed(error)
    health.cycle_failed(error)
    assert health.errors == {"unreachable": 1}
    health.cycle_failed(UnreachableError("cannot reach the gateway"))
    assert health.errors == {"unreachable": 2}


def test_no_success_for_three_intervals_is_unhealthy() -> None:
    clock = Clock(1000.0)
    health = Health(clock)
    health.interval_secs = 60.0
    clock.now += STALE_AFTER_INTERVALS * 60 - 1
    assert health.verdict()[0], "three intervals after start are allowed for the first cycle"
    clock.now += 2
    healthy, reason = health.verdict()
    assert not healthy and reason.startswith("no successful cycle since start 181 s")
    health.cycle_ok()
    assert health.verdict() == (True, "")
    clock.now += 181
    healthy, reason = health.verdict()
    assert not healthy and reason.startswith("no successful cycle for 181 s (more than 3 x --interval-secs 60)")


def test_checks_make_it_unhealthy_and_say_why() -> None:
    health = Health(Clock())
    state = {"stuck": None}
    health.checks.append(lambda: state["stuck"])
    assert health.verdict() == (True, "")
    state["stuck"] = "destination a: oldest unsent object is 999 s old"
    assert health.verdict() == (False, "destination a: oldest unsent object is 999 s old")


def test_cycle_outcomes_notify_listeners() -> None:
    health = Health(Clock())
    calls = []
    health.on_cycle.append(lambda: calls.append(health.failed))
    health.cycle_failed(TempFailError("rate limited"))
    health.cycle_ok()
    assert calls == [True, False]


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (AuthError("x"), "auth"),
        (UnreachableError("x"), "unreachable"),
        (TempFailError("x"), "tempfail"),
        (ConfigError("x"), "config"),
        (ValueError("x"), "runtime"),
        ("auth", "auth"),
    ],
)
def test_error_kind(error, kind) -> None:
    assert error_kind(error) == kind


def test_parse_addr() -> None:
    assert parse_addr("127.0.0.1:9464") == ("127.0.0.1", 9464)
    assert parse_addr(":9464") == ("0.0.0.0", 9464)
    assert parse_addr("[::1]:0") == ("::1", 0)
    for bad in ("9464", "host:", "host:http", "h:70000"):
        with pytest.raises(ValueError, match="is not HOST:PORT"):
            parse_addr(bad)


def test_textfile_path(tmp_path: Path) -> None:
    assert textfile_path(str(tmp_path), "s3-batch") == tmp_path / "s3-batch.prom"
    assert textfile_path(f"{tmp_path}/new/", "aws-discovery") == tmp_path / "new" / "aws-discovery.prom"
    assert textfile_path(str(tmp_path / "x.prom"), "s3-batch") == tmp_path / "x.prom"

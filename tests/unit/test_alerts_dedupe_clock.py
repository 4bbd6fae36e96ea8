"""Dedupe key ages under a wall clock that jumps (issue 11, case 7): no key is forgotten early."""

from __future__ import annotations

from harmony_pipes.harmony_alerts.dedupe import DigestSet, SteadyClock, key_digest

DAY = 86400


class Clocks:
    def __init__(self) -> None:
        self.wall = 1_800_000_000.0
        self.mono = 50.0

    def step(self, secs: float, *, wall_jump: float = 0.0) -> None:
        self.mono += secs
        self.wall += secs + wall_jump


def test_a_forward_jump_follows_the_monotonic_clock_and_expires_nothing_early() -> None:
    clocks = Clocks()
    clock = SteadyClock(lambda: clocks.wall, lambda: clocks.mono, slack_secs=120)
    keys = DigestSet(1000, ttl_secs=30 * DAY)
    for n in range(100):
        assert keys.add(key_digest(f"t:{n}"), clock.now_secs())
    clocks.step(10, wall_jump=365 * DAY)  # the wall clock is set a year ahead
    now = clock.now_secs()
    assert now <= int(clocks.mono - 50 + 1_800_000_000 + 120)
    assert clock.jump_secs is not None and clock.jump_secs > 364 * DAY
    assert not keys.add(key_digest("t:0"), now), "a key seen 10 s ago is still a duplicate"
    assert len(keys) == 100


def test_a_backward_jump_never_moves_key_ages_back_and_real_time_still_expires() -> None:
    clocks = Clocks()
    clock = SteadyClock(lambda: clocks.wall, lambda: clocks.mono, slack_secs=120)
    start = clock.now_secs()
    clocks.step(5, wall_jump=-3600)
    assert clock.now_secs() == start and clock.jump_secs is not None and clock.jump_secs < 0
    keys = DigestSet(1000, ttl_secs=60)
    keys.add(key_digest("a"), clock.now_secs())
    clocks.step(3600 + 61)  # real time passes: the wall clock catches up and moves on
    assert keys.add(key_digest("a"), clock.now_secs()), "expired after its TTL of real time"


def test_small_drift_is_not_a_jump() -> None:
    clocks = Clocks()
    clock = SteadyClock(lambda: clocks.wall, lambda: clocks.mono, slack_secs=120)
    clocks.step(1000, wall_jump=30)
    assert clock.now_secs() == int(clocks.wall) and clock.jump_secs is None

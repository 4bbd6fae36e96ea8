"""Backoff with full jitter and Retry-After, shared by the network commands.

Full jitter (sleep = uniform(0, min(cap, base * 2**attempt))) spreads retries of many clients, as
in the AWS architecture blog and botocore's standard mode. A server's Retry-After wins over the
computed delay, capped at `max_delay_secs` so a bogus header cannot stall a pipeline for hours.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime


def parse_retry_after(value: str | None, now_epoch_secs: float) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date), else None."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - now_epoch_secs)


@dataclass
class Backoff:
    """How long to wait before retry number `attempt` (0-based); None when retries are used up."""

    base_delay_secs: float = 0.5
    max_delay_secs: float = 30.0
    max_retries: int = 5
    rng: Callable[[], float] = field(default=random.random, repr=False)

    def delay_secs(self, attempt: int, retry_after_secs: float | None = None) -> float | None:
        if attempt >= self.max_retries:
            return None
        if retry_after_secs is not None:
            return min(self.max_delay_secs, max(0.0, retry_after_secs))
        ceiling = min(self.max_delay_secs, self.base_delay_secs * (2**attempt))
        return ceiling * self.rng()

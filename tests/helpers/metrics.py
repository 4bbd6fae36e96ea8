"""Read our metrics the way Prometheus would: scrape /metrics and /healthz, parse textfiles.

Parsing goes through prometheus_client's own text parser, so a file or page that is not valid
Prometheus text fails the test.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers.wait import wait_until


def parse(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample: (sample name, sorted labels) -> value."""
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def families(text: str) -> dict[str, str]:
    """Family name -> type (counter, gauge ...)."""
    return {f.name: f.type for f in text_string_to_metric_families(text)}


def value(samples: dict, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def scrape(url: str) -> dict:
    resp = requests.get(url + "/metrics", timeout=10)
    assert resp.status_code == 200, resp.text
    return parse(resp.text)


def health(url: str) -> tuple[int, dict[str, Any]]:
    resp = requests.get(url + "/healthz", timeout=10)
    assert resp.text.count("\n") == 1, f"not one line: {resp.text!r}"
    return resp.status_code, orjson.loads(resp.content)


def read_textfile(path: Path) -> dict:
    return parse(path.read_text())


def wait_for(predicate: Callable[[], Any], timeout_secs: float, what: str, poll_secs: float = 0.1) -> Any:
    """`wait_until` for an HTTP endpoint: a refused connection counts as not up yet."""
    return wait_until(predicate, timeout_secs, what, poll_secs, ignore=(requests.ConnectionError,))

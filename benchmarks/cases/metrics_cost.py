"""What `--metrics-addr` costs: harmony-alerts and s3-batch with and without it, same run, same input.

Issue 13's target: throughput with `--metrics-addr` >= 0.97x without. The with-metrics runs are
scraped (GET /metrics) every `SCRAPE_INTERVAL_SECS` while they run — more often than a usual
15 s Prometheus scrape, so the figure includes the exporter's real work, not an idle thread.

`--metrics-addr` is for long-running modes, so each variant processes an input that takes it
several seconds — 1,000,000 HEC events (harmony-alerts; the HEC corpus's generator at 5x its
lines) and 1 GiB of alert records (s3-batch -> file://, the s3-batch group's 1 GiB input), both
scaled by HARMONY_BENCH_SCALE: the one-off cost of starting the exporter (prometheus_client's
imports, ~70-90 ms) is in the figure as it is in a process that runs for a while, not as 6 % of
a 1.4 s run. The notes give that start-up cost on its own: each variant on empty input, and the
throughput ratio with it taken out of both walls.

The variants alternate (plain, metrics, plain, metrics, ...) `REPEATS` times and each row keeps
its best (shortest) wall time: on a shared machine other work only ever adds time, so the best of
several alternating runs is the least noisy estimate of each variant's own cost (every wall is in
the notes). The notes also give each variant's best CPU time (user + system, from wait4), which
other load disturbs far less than wall time.
Runs inside `benchmarks/run_pipe.py metrics` or alone: `python benchmarks/cases/metrics_cost.py`.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import threading
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from benchmarks.cases.s3_batch import FILE_INPUT_BYTES, input_label, make_input
from benchmarks.harness import Measurement, best_of, row, run_standalone, size_label

GROUP = "metrics-cost"
# each run takes 5-13 s here; with 3 alternations the s3-batch pair read 0.95x and 1.00x in two
# runs of the same code (noise)
REPEATS = 5
SCRAPE_INTERVAL_SECS = 1.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Scraper(threading.Thread):
    """GET /metrics every SCRAPE_INTERVAL_SECS until stopped; counts the answers it got."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.url = f"http://127.0.0.1:{port}/metrics"
        self.stop_event = threading.Event()
        self.scrapes = 0

    def run(self) -> None:
        while not self.stop_event.wait(SCRAPE_INTERVAL_SECS):
            try:
                with urllib.request.urlopen(self.url, timeout=5) as resp:
                    if b"harmony_pipes_records_in_total" in resp.read():
                        self.scrapes += 1
            except OSError:
                pass  # not listening yet, or already gone


def _cpu_note(plain: Measurement, metrics: Measurement) -> str:
    return (
        f"best CPU (user+sys) plain {plain.cpu_secs:.3f} s, with metrics {metrics.cpu_secs:.3f} s: "
        f"throughput per CPU second {plain.cpu_secs / metrics.cpu_secs:.3f}x"
    )


def _net_note(
    ctx: Any, argv: list[str], plain: Measurement, metrics: Measurement, records: int, prepare: Any = None
) -> str:
    """The one-off part of the cost: each variant's start-up on empty input (best of REPEATS,
    alternating), and the throughput ratio with it taken out of both walls."""
    empty_plain, empty_metrics, _, _ = _pair(ctx, argv, Path(os.devnull), prepare)
    start_plain, start_metrics = empty_plain.wall_secs, empty_metrics.wall_secs
    net_plain, net_metrics = plain.wall_secs - start_plain, metrics.wall_secs - start_metrics
    return (
        f"start-up on empty input: plain {start_plain * 1000:.0f} ms, with metrics {start_metrics * 1000:.0f} ms "
        f"(prometheus_client's imports); net of start-up {records / net_metrics:,.0f} vs {records / net_plain:,.0f} "
        f"rec/s = {net_plain / net_metrics:.3f}x"
    )


def _pair(ctx: Any, argv: list[str], source: Path, prepare: Any = None) -> tuple[Measurement, Measurement, int, list]:
    """(plain best, with-metrics best, scrapes answered, all walls) over REPEATS alternations."""
    plain: list[Measurement] = []
    metrics: list[Measurement] = []
    scrapes = 0
    for _ in range(REPEATS):
        for with_metrics in (False, True):
            if prepare is not None:
                prepare()
            args = list(argv)
            scraper = None
            if with_metrics:
                port = _free_port()
                args += ["--metrics-addr", f"127.0.0.1:{port}"]
                scraper = Scraper(port)
                scraper.start()
            try:
                m = ctx.measure(args, stdin_path=source)
            finally:
                if scraper is not None:
                    scraper.stop_event.set()
                    scraper.join()
                    scrapes += scraper.scrapes
            (metrics if with_metrics else plain).append(m)
    walls = [round(m.wall_secs, 3) for m in plain], [round(m.wall_secs, 3) for m in metrics]
    return best_of(plain), best_of(metrics), scrapes, list(walls)


def run(ctx: Any) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []

    corpus, records, size = ctx.long_corpus()
    label = f"HEC events, 5x the corpus {size_label(size)}"
    plain, metrics, scrapes, walls = _pair(ctx, [ctx.bin("harmony-alerts")], corpus)
    note = f"alternating with the other variant; walls plain {walls[0]}, with metrics {walls[1]}"
    scraped = f"scraped every {SCRAPE_INTERVAL_SECS:g} s ({scrapes} scrapes answered); {_cpu_note(plain, metrics)}"
    scraped += "; " + _net_note(ctx, [ctx.bin("harmony-alerts")], plain, metrics, records)
    rows.append(
        row(GROUP, "harmony-alerts", records, size, plain, baseline=True, key="alerts_plain", input=label, notes=note)
    )
    rows.append(
        row(GROUP, "harmony-alerts --metrics-addr", records, size, metrics, key="alerts_metrics", input=label,
            notes=scraped)
    )  # fmt: skip

    source, s_records, s_size = make_input(ctx, int(FILE_INPUT_BYTES * ctx.scale))
    workdir = Path(ctx.workdir)
    store, spool = workdir / "metrics_cost_store", workdir / "metrics_cost_spool"

    def clean() -> None:
        for path in (store, spool):
            shutil.rmtree(path, ignore_errors=True)

    argv = [ctx.bin("s3-batch"), "--dest", f"file://{store}/", "--spool-dir", str(spool)]
    plain, metrics, scrapes, walls = _pair(ctx, argv, source, prepare=clean)
    net = _net_note(ctx, argv, plain, metrics, s_records, prepare=clean)
    clean()
    note = f"alternating with the other variant; walls plain {walls[0]}, with metrics {walls[1]}"
    label = input_label(s_size)
    scraped = f"scraped every {SCRAPE_INTERVAL_SECS:g} s ({scrapes} scrapes answered); {_cpu_note(plain, metrics)}"
    scraped += "; " + net
    rows.append(
        row(GROUP, "s3-batch -> file://", s_records, s_size, plain, baseline=True, key="s3_plain", input=label,
            notes=note)
    )  # fmt: skip
    rows.append(
        row(GROUP, "s3-batch -> file:// --metrics-addr", s_records, s_size, metrics, key="s3_metrics", input=label,
            notes=scraped)
    )  # fmt: skip
    return rows


if __name__ == "__main__":
    run_standalone(run)

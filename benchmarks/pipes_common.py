"""Shared by the pipeline benchmark cases (cases/fluentbit.py, cases/full_chain.py): the corpus,
the Fluent Bit lookup, the row shape, and a stand-alone context to run a case file on its own.
Not a case itself (it lives outside cases/)."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
CORPUS_RECORDS = 200_000  # ~650 bytes each: ~130 MB, several seconds per run


def scale() -> float:
    try:
        return max(0.01, float(os.environ.get("HARMONY_BENCH_SCALE", "1.0")))
    except ValueError:
        return 1.0


def _load(path: Path, name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def corpus(ctx: Any) -> tuple[Path, int, int]:
    """(path, records, bytes) of the harmony-alerts corpus — the same file the harmony-alerts rows
    read when the harness provides it (`ctx.corpus()`), else generated with gen_corpus.py."""
    provided = getattr(ctx, "corpus", None)
    if callable(provided):
        found = provided()
        path = Path(found[0] if isinstance(found, tuple) else found)
    else:
        path = ctx.workdir / "hec-events-corpus.ndjson"
        if not path.exists():
            sys.path.insert(0, str(BENCH_DIR))
            from gen_corpus import write_corpus

            write_corpus(path, int(CORPUS_RECORDS * scale()), seed=42)
    data_records = 0
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            data_records += chunk.count(b"\n")
    return path, data_records, path.stat().st_size


def fluent_bit(ctx: Any) -> str | None:
    path = getattr(ctx, "fluent_bit", None)
    if path:
        return str(path)
    candidate = REPO.parent / "shared" / "tools" / "fluent-bit" / "fluent-bit"
    if candidate.exists() and os.access(candidate, os.X_OK):
        return str(candidate)
    return shutil.which("fluent-bit")


def row(group: str, case: str, records: int, size: int, m: Any, baseline: bool, notes: str) -> dict[str, Any]:
    return {
        "case": case,
        "group": group,
        "records": records,
        "bytes": size,
        "wall_secs": round(m.wall_secs, 3),
        "peak_rss_mb": round(m.peak_rss_mb, 1),
        "baseline": baseline,
        "notes": notes,
    }


class Measurement:
    def __init__(self, wall_secs: float, peak_rss_mb: float) -> None:
        self.wall_secs = wall_secs
        self.peak_rss_mb = peak_rss_mb


class StandaloneContext:
    """Enough of `benchmarks.harness.BenchContext` to run a case file on its own."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.python = sys.executable
        self.fluent_bit = fluent_bit(None)

    def bin(self, name: str) -> str:
        return str(Path(sys.executable).parent / name)

    def measure(
        self,
        argv: list[str] | str,
        stdin_path: Path | None = None,
        stdout_path: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> Measurement:
        import psutil

        with contextlib.ExitStack() as stack:
            stdin = stack.enter_context(open(stdin_path, "rb")) if stdin_path else subprocess.DEVNULL
            stdout = stack.enter_context(open(stdout_path, "wb")) if stdout_path else subprocess.DEVNULL
            started = time.monotonic()
            proc = subprocess.Popen(
                argv,
                shell=isinstance(argv, str),
                executable="/bin/bash" if isinstance(argv, str) else None,
                stdin=stdin,
                stdout=stdout,
                stderr=subprocess.DEVNULL,
                env=env,
            )
            peak = 0
            ps = psutil.Process(proc.pid)
            while proc.poll() is None:
                try:
                    rss = ps.memory_info().rss + sum(c.memory_info().rss for c in ps.children(recursive=True))
                    peak = max(peak, rss)
                except psutil.Error:
                    pass
                time.sleep(0.05)
            wall = time.monotonic() - started
        if proc.returncode != 0:
            raise RuntimeError(f"{argv if isinstance(argv, str) else argv[0]} exited {proc.returncode}")
        return Measurement(wall, peak / 1024**2)

"""Shared by the pipeline benchmark cases (cases/fluentbit.py, cases/full_chain.py): the corpus,
the Fluent Bit lookup, the row shape, and a stand-alone context to run a case file on its own.
Not a case itself (it lives outside cases/). The measuring itself is `harness.BenchContext`."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
sys.path.insert(0, str(REPO))

from benchmarks.harness import BenchContext, bench_scale, run_standalone, size_label  # noqa: E402
from benchmarks.harness import row as _harness_row  # noqa: E402

CORPUS_RECORDS = 200_000  # ~650 bytes each: ~130 MB, several seconds per run
StandaloneContext = BenchContext  # what `python benchmarks/cases/X.py` runs with
__all__ = ["StandaloneContext", "corpus", "corpus_label", "fluent_bit", "row", "run_standalone", "scale"]


def scale() -> float:
    return bench_scale()


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


def corpus_label(size: int) -> str:
    """The input name of every row that reads the HEC corpus (the same as cases/alerts.py's)."""
    return f"HEC corpus {size_label(size)}"


def fluent_bit(ctx: Any) -> str | None:
    path = getattr(ctx, "fluent_bit", None)
    if path:
        return str(path)
    candidate = REPO.parent / "shared" / "tools" / "fluent-bit" / "fluent-bit"
    if candidate.exists() and os.access(candidate, os.X_OK):
        return str(candidate)
    return shutil.which("fluent-bit")


def row(
    group: str,
    case: str,
    records: int,
    size: int,
    m: Any,
    baseline: bool,
    notes: str,
    **extra: Any,
) -> dict[str, Any]:
    """`harness.row` with positional baseline/notes (`key=`, `input=`, `compare=` pass through)."""
    return _harness_row(group, case, records, size, m, baseline=baseline, notes=notes, **extra)

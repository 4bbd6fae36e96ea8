"""Run every whole-process benchmark case and print one table with same-run baselines.

    python benchmarks/run_pipe.py [case ...]     # e.g. alerts s3_batch; default: all cases

Writes benchmarks/results/latest.json and benchmarks/RESULTS.md.
"""

from __future__ import annotations

import importlib.util
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.harness import BENCH_DIR, BenchContext, render_table, with_rates, write_results


def load_case(path: Path):
    spec = importlib.util.spec_from_file_location(f"bench_case_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv: list[str]) -> int:
    wanted = set(argv)
    cases = sorted(p for p in (BENCH_DIR / "cases").glob("*.py") if not p.name.startswith("_"))
    if wanted:
        cases = [p for p in cases if p.stem in wanted]
    rows: list[dict] = []
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="harmony-bench-") as scratch:
        ctx = BenchContext(Path(scratch))
        try:
            for path in cases:
                started = time.perf_counter()
                print(f"== {path.stem}", file=sys.stderr, flush=True)
                try:
                    module = load_case(path)
                    case_rows = module.run(ctx)
                    rows.extend(case_rows)
                    print(f"   {len(case_rows)} rows in {time.perf_counter() - started:.1f}s", file=sys.stderr)
                except Exception as exc:  # one broken case must not hide the others' figures
                    failures.append(f"{path.stem}: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}")
                    traceback.print_exc()
        finally:
            ctx.close()
    rows = with_rates(rows)
    print(render_table(rows))
    for failure in failures:
        print(f"FAILED {failure}", file=sys.stderr)
    write_results(rows, failures)
    return 1 if failures and not rows else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

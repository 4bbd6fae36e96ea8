"""Run the whole-process benchmark cases and report them with same-run baselines and the targets.

    python benchmarks/run_pipe.py                    # every case (what `make bench` runs)
    python benchmarks/run_pipe.py alerts s3_batch    # only these cases; other groups keep their rows
    python benchmarks/run_pipe.py --scale 0.05 alerts   # reduced inputs: a smoke test, not the benchmark
    python benchmarks/run_pipe.py --list             # the cases, their files and groups

Writes benchmarks/results/latest.json and benchmarks/RESULTS.md (or into --out-dir): the rows of
every group this run measured replace that group's stored rows; the other groups are kept with
their own measured_at.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.harness import (
    BENCH_DIR,
    RESULTS_DIR,
    BenchContext,
    load_results,
    machine_summary,
    merge_results,
    render_table,
    with_rates,
    write_results,
)

# A case owns its groups: the files that add rows to the same group run together, so every ratio
# in a group compares figures of one run. (name -> (files in cases/, groups, what it measures))
CASES: dict[str, tuple[tuple[str, ...], tuple[str, ...], str]] = {
    "alerts": (
        ("alerts", "fluentbit"),
        ("harmony-alerts", "start-up", "dedupe"),
        "harmony-alerts (defaults, --all --no-dedupe) vs orjson floor on the HEC and alerts corpora, jq, Fluent Bit "
        "(file, Lua); start-up; 1M dedupe keys peak RSS",
    ),
    "s3_batch": (
        ("s3_batch", "s3_fluentbit"),
        ("s3-batch",),
        "s3-batch into moto and file:// vs gzip floor and Fluent Bit (256 MiB); file:// on 1 GiB for peak RSS",
    ),
    "full_chain": (
        ("full_chain",),
        ("harmony-events", "full-chain"),
        "harmony-events vs the emulator's own serving rate; harmony-events | harmony-alerts [| s3-batch]",
    ),
    "discovery": (
        ("discovery",),
        ("aws-discovery",),
        "aws-discovery full and no-change cycle over 10,000 instances in 4 regions (moto)",
    ),
    "metrics": (
        ("metrics_cost",),
        ("metrics-cost",),
        "harmony-alerts and s3-batch -> file:// with vs without --metrics-addr (scraped every second), same input",
    ),
}
# a file name also selects the case it belongs to
ALIASES = {stem: name for name, (stems, _, _) in CASES.items() for stem in stems}


def load_case(path: Path):
    spec = importlib.util.spec_from_file_location(f"bench_case_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="run_pipe.py",
        description="Whole-process benchmarks with same-run baselines; writes RESULTS.md and latest.json.",
        epilog="A partial run replaces only the groups it re-ran. Cases: "
        + ", ".join(CASES)
        + " (--list describes them).",
    )
    parser.add_argument("cases", nargs="*", metavar="CASE", help="cases to run (default: all)")
    parser.add_argument(
        "--scale",
        type=float,
        help="multiply every input size (env HARMONY_BENCH_SCALE; default 1 = the benchmark). "
        "Below 1 the figures are a smoke test and size-defined targets are not evaluated.",
    )
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    parser.add_argument(
        "--out-dir",
        type=Path,
        help="write latest.json and RESULTS.md here (merging with the latest.json found there) instead of "
        "benchmarks/results/ and benchmarks/",
    )
    args = parser.parse_args(argv)
    unknown = [c for c in args.cases if c not in CASES and c not in ALIASES]
    if unknown:
        print(
            f"run_pipe.py: error: unknown case {', '.join(map(repr, unknown))} (cases: {', '.join(CASES)})",
            file=sys.stderr,
        )
        sys.exit(2)
    if args.scale is not None and not args.scale > 0:
        print("run_pipe.py: error: --scale must be > 0", file=sys.stderr)
        sys.exit(2)
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.list:
        for name, (stems, groups, what) in CASES.items():
            files = ", ".join(f"cases/{s}.py" for s in stems)
            print(f"{name:11s} {what}\n{'':11s} files: {files}; groups: {', '.join(groups)}")
        return 0
    if args.scale is not None:
        os.environ["HARMONY_BENCH_SCALE"] = repr(max(0.01, args.scale))
    selected = list(dict.fromkeys(ALIASES.get(c, c) for c in args.cases)) or list(CASES)
    for asked in args.cases:
        if asked in ALIASES and asked not in CASES:
            print(f"{asked} is part of case {ALIASES[asked]} (same groups): running {ALIASES[asked]}", file=sys.stderr)
    machine = machine_summary()
    rows: list[dict] = []
    groups: dict[str, dict] = {}
    ran: dict[str, str | None] = {}
    with tempfile.TemporaryDirectory(prefix="harmony-bench-") as scratch:
        ctx = BenchContext(Path(scratch))
        try:
            for name in selected:
                stems, _, _ = CASES[name]
                case_rows: list[dict] = []
                failures: list[str] = []
                started = time.perf_counter()
                for stem in stems:
                    print(f"== {name}: cases/{stem}.py", file=sys.stderr, flush=True)
                    try:
                        case_rows.extend(load_case(BENCH_DIR / "cases" / f"{stem}.py").run(ctx))
                    except Exception as exc:  # one broken case must not hide the others' figures
                        failures.append(f"cases/{stem}.py: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}")
                        traceback.print_exc()
                print(f"   {len(case_rows)} rows in {time.perf_counter() - started:.1f}s", file=sys.stderr)
                # stable: a group's rows together, and within it the rows of one input together
                group_at = {g: i for i, g in enumerate(dict.fromkeys(r["group"] for r in case_rows))}
                input_at = {x: i for i, x in enumerate(dict.fromkeys(r.get("input", "") for r in case_rows))}
                case_rows.sort(key=lambda r: (group_at[r["group"]], input_at[r.get("input", "")]))
                measured_at = machine_summary()["measured_at"]
                for r in case_rows:
                    r["bench_case"] = name
                    groups[r["group"]] = {
                        "measured_at": measured_at,
                        "scale": machine["scale"],
                        "bench_case": name,
                        "cpus": machine["cpus"],
                        "python": machine["python"],
                    }
                rows.extend(case_rows)
                ran[name] = f"{name}: " + "; ".join(failures) if failures else None
        finally:
            ctx.close()
    rows = with_rates(rows)
    print(render_table(rows))
    json_path = (args.out_dir / "latest.json") if args.out_dir else (RESULTS_DIR / "latest.json")
    results = merge_results(load_results(json_path), rows, groups, ran, machine, list(CASES))
    written = write_results(results, args.out_dir)
    print(f"wrote {written[0]} and {written[1]}", file=sys.stderr)
    for failure in filter(None, ran.values()):
        print(f"FAILED {failure}", file=sys.stderr)
    return 1 if any(ran.values()) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

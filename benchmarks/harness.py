"""The whole-process benchmark harness: runs cases, measures wall time and peak RSS, prints ratios.

A case module in benchmarks/cases/ has `run(ctx) -> list[row]`. A row is one measured process or
pipe: `{"key", "case", "group", "input", "records", "bytes", "wall_secs", "peak_rss_mb",
"baseline", "notes"}` (see `row()`). Baselines are rows with `"baseline": True` measured in the
same run; every non-baseline row gets a ratio (records/s ours ÷ theirs) against each baseline of
its group that read the same `input`, or against the rows named in its `compare` list, so a
figure is never reported without its yardstick and never against a different input.

Units: MB = 10^6 bytes (MB/s and peak RSS MB); input sizes are named in MiB/GiB (2^20/2^30),
as the issues define them ("1 GiB of input").

`benchmarks/run_pipe.py` runs the cases, then `merge_results` folds the new rows into
`benchmarks/results/latest.json`, replacing only the groups that were re-run, and
`write_results` renders `benchmarks/RESULTS.md` (targets table from `targets.py` included).
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
MB = 1_000_000
MIB = 2**20
GIB = 2**30
TREE_SCAN_SECS = 0.25


def bench_scale() -> float:
    try:
        return max(0.01, float(os.environ.get("HARMONY_BENCH_SCALE", "1.0")))
    except ValueError:
        return 1.0


def size_label(size: int) -> str:
    """An input size as the issues name them: MiB below 1 GiB, else GiB."""
    return f"{size / GIB:.2f} GiB" if size >= GIB else f"{size / MIB:.1f} MiB"


@dataclass
class Measurement:
    wall_secs: float
    peak_rss_mb: float
    returncode: int
    stderr_tail: str
    cpu_secs: float = 0.0  # user + system CPU of the measured process (and the children it waited for)
    runs: int = 1  # how many runs this figure is the best of
    in_rounds: bool = False  # those runs alternated with the runs of the rows it is compared with


# Throughput rows keep the best of this many runs (env HARMONY_BENCH_REPEATS): on a shared machine
# other work only ever adds time, and one run of a 1.5 s command swung by ±20 % here.
DEFAULT_REPEATS = 3


def best_of(runs: list[Measurement], in_rounds: bool = False) -> Measurement:
    """The shortest wall (and CPU) of several runs of one command; peak RSS is the largest seen."""
    best = min(runs, key=lambda m: m.wall_secs)
    return Measurement(
        best.wall_secs,
        max(m.peak_rss_mb for m in runs),
        best.returncode,
        best.stderr_tail,
        min(m.cpu_secs for m in runs),
        runs=len(runs),
        in_rounds=in_rounds,
    )


class BenchContext:
    """What a case may use: scratch space, our binaries, baselines' binaries, a moto server."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.python = sys.executable
        self.scale = bench_scale()
        fluent_bit = REPO.parent / "shared" / "tools" / "fluent-bit" / "fluent-bit"
        self.fluent_bit = str(fluent_bit) if fluent_bit.exists() else shutil.which("fluent-bit")
        self.jq = shutil.which("jq")
        self._moto: Any = None
        self._corpus: tuple[Path, int, int] | None = None
        self._alerts_corpus: tuple[Path, int, int] | None = None
        self._long_corpus: tuple[Path, int, int] | None = None

    @property
    def repeats(self) -> int:
        return max(1, int(os.environ.get("HARMONY_BENCH_REPEATS", DEFAULT_REPEATS)))

    def measure_best(self, run: Callable[[], Measurement]) -> Measurement:
        """`run` (a measurement that leaves nothing behind for the next one) `repeats` times: the best."""
        return best_of([run() for _ in range(self.repeats)])

    def measure_rounds(self, runs: dict[str, Callable[[], Measurement]]) -> dict[str, Measurement]:
        """Each of `runs` `repeats` times, in rounds (one run of each per round, in order), and
        the best of each: a slow minute of a shared machine then costs every command compared in
        a ratio alike, instead of all runs of one of them."""
        measured: dict[str, list[Measurement]] = {name: [] for name in runs}
        for _ in range(self.repeats):
            for name, run in runs.items():
                measured[name].append(run())
        return {name: best_of(found, in_rounds=True) for name, found in measured.items()}

    def bin(self, name: str) -> str:
        return str(Path(sys.executable).parent / name)

    def corpus(self) -> tuple[Path, int, int]:
        """The shared HEC event corpus (path, records, bytes): generated once per run."""
        if self._corpus is None:
            self._corpus = self._generate("write_corpus", "hec-events-corpus.ndjson")
        return self._corpus

    def alerts_corpus(self) -> tuple[Path, int, int]:
        """The alerts corpus (path, records, bytes): hec-emulator events, 95% of them alerts
        (gen_corpus.write_alerts_corpus); as many lines as `corpus()`, generated once per run."""
        if self._alerts_corpus is None:
            self._alerts_corpus = self._generate("write_alerts_corpus", "hec-alerts-corpus.ndjson")
        return self._alerts_corpus

    def long_corpus(self) -> tuple[Path, int, int]:
        """The HEC corpus's generator at 5x its lines (1,000,000 x scale, distinct events): for a
        run that must last like a long-running process does, generated once per run."""
        if self._long_corpus is None:
            self._long_corpus = self._generate("write_corpus", "hec-events-corpus-long.ndjson", factor=5)
        return self._long_corpus

    def _generate(self, writer: str, name: str, factor: int = 1) -> tuple[Path, int, int]:
        """200,000 x scale x factor lines of gen_corpus.`writer` (seed 42) in the workdir: (path,
        records, bytes)."""
        sys.path.insert(0, str(BENCH_DIR))
        import gen_corpus

        records = int(200_000 * self.scale * factor)
        path = self.workdir / name
        size = getattr(gen_corpus, writer)(path, records, seed=42)
        return path, records, size

    def moto_endpoint(self) -> str:
        if self._moto is None:
            import socket

            from moto.server import ThreadedMotoServer

            logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                port = sock.getsockname()[1]
            for key, value in {
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_DEFAULT_REGION": "us-east-1",
            }.items():
                os.environ.setdefault(key, value)
            self._moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
            self._moto.start()
            self._moto_url = f"http://127.0.0.1:{port}"
        return self._moto_url

    def close(self) -> None:
        if self._moto is not None:
            self._moto.stop()
            self._moto = None

    def measure(
        self,
        argv: list[str] | str,
        stdin_path: str | os.PathLike[str] | None = None,
        stdout_path: str | os.PathLike[str] | None = None,
        env: dict[str, str] | None = None,
        check: bool = True,
    ) -> Measurement:
        """Run a command (argv list, or a bash string for pipes) and measure it.

        Peak RSS (MB = 10^6 bytes) is the sum over the process tree of each process's VmHWM (its
        own high-water mark, which the kernel resets at exec), polled every 10 ms (the tree is
        re-read every TREE_SCAN_SECS); for a single
        process that is its exact peak (VmHWM only grows; only growth in the last poll interval
        before exit can be missed), for a pipe an upper bound of the concurrent peak. (ru_maxrss
        is useless here: it inherits the forking Python's RSS.)
        """
        import psutil

        with contextlib.ExitStack() as stack:
            stdin = stack.enter_context(open(stdin_path, "rb")) if stdin_path else subprocess.DEVNULL
            stdout = stack.enter_context(open(stdout_path, "wb")) if stdout_path else subprocess.DEVNULL
            stderr_path = self.workdir / f".stderr-{time.monotonic_ns()}"
            stderr = stack.enter_context(open(stderr_path, "wb"))
            shell = isinstance(argv, str)
            started = time.perf_counter()
            proc = subprocess.Popen(
                ["/bin/bash", "-o", "pipefail", "-c", argv] if shell else argv,
                stdin=stdin,
                stdout=stdout,
                stderr=stderr,
                env=env,
            )
            hwm_kb: dict[int, int] = {}
            root = psutil.Process(proc.pid)
            wall = 0.0
            cpu = 0.0
            tree = [proc.pid]
            next_scan = 0.0
            while True:
                try:
                    pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                except ChildProcessError:
                    break
                if pid:
                    wall = time.perf_counter() - started
                    cpu = usage.ru_utime + usage.ru_stime
                    proc.returncode = os.waitstatus_to_exitcode(status)
                    break
                now = time.perf_counter()
                if now >= next_scan:  # finding the children reads all of /proc (~3 ms): not every poll,
                    # or the poller takes a quarter of a core from a multi-threaded command
                    next_scan = now + TREE_SCAN_SECS
                    try:
                        tree = [proc.pid, *(child.pid for child in root.children(recursive=True))]
                    except psutil.Error:
                        tree = [proc.pid]
                for member in tree:
                    hwm = _vm_hwm_kb(member)
                    if hwm is not None:
                        hwm_kb[member] = max(hwm, hwm_kb.get(member, 0))
                time.sleep(0.01)
        tail = stderr_path.read_text(errors="replace")[-4000:]
        stderr_path.unlink(missing_ok=True)
        if check and proc.returncode != 0:
            shown = argv if shell else " ".join(map(str, argv))
            raise RuntimeError(f"benchmark command failed ({proc.returncode}): {shown[:200]}\n{tail}")
        return Measurement(wall, sum(hwm_kb.values()) * 1024 / MB, proc.returncode, tail, cpu)


def _vm_hwm_kb(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status", "rb") as status:
            for line in status:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def stats_line(stderr_tail: str) -> dict[str, Any]:
    """The `{"stats": {...}}` line a command wrote last on stderr ({} when there is none)."""
    for line in reversed(stderr_tail.splitlines()):
        if line.startswith('{"stats"'):
            with contextlib.suppress(orjson.JSONDecodeError):
                return orjson.loads(line)["stats"]
    return {}


def row(
    group: str,
    case: str,
    records: int,
    size_bytes: int,
    m: Any,
    *,
    baseline: bool = False,
    notes: str = "",
    key: str | None = None,
    input: str = "",
    compare: list[str] | None = None,
) -> dict[str, Any]:
    """One table row. `key` is a stable id (targets and `compare` lists use it; default: the case
    name); `input` names what the row read (ratios only pair rows of the same input); `compare`
    lists the keys of the rows (same run, any group) this row is compared against instead of its
    group's baselines."""
    out: dict[str, Any] = {
        "key": key or case,
        "case": case,
        "group": group,
        "input": input,
        "records": records,
        "bytes": size_bytes,
        "wall_secs": round(m.wall_secs, 4),
        "peak_rss_mb": round(m.peak_rss_mb, 1),
        "baseline": baseline,
        "notes": notes,
    }
    runs = getattr(m, "runs", 1)
    if runs > 1:
        out["runs"] = runs
        best = f"best of {runs} runs"
        if getattr(m, "in_rounds", False):
            best += " (in rounds with the rows it is compared with)"
        out["notes"] = f"{best}; {notes}" if notes else best
    if compare is not None:
        out["compare"] = list(compare)
    return out


def with_rates(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Add records/s, MB/s (10^6 bytes) and ratios; `rows` must all come from one run."""
    for r in rows:
        secs = r.get("wall_secs") or 0
        r["records_per_sec"] = round(r["records"] / secs, 1) if secs and r.get("records") else None
        r["mb_per_sec"] = round(r["bytes"] / MB / secs, 2) if secs and r.get("bytes") else None
    by_key = {r.get("key", r["case"]): r for r in rows}
    for r in rows:
        if r.get("records_per_sec") is None:
            continue
        if "compare" in r:
            bases = [by_key[k] for k in r["compare"] if k in by_key]
        elif r.get("baseline"):
            continue
        else:
            bases = [
                b
                for b in rows
                if b.get("baseline") and b["group"] == r["group"] and b.get("input", "") == r.get("input", "")
            ]
        r["ratios"] = {
            b["case"]: round(r["records_per_sec"] / b["records_per_sec"], 2)
            for b in bases
            if b is not r and b.get("records_per_sec")
        }
    return rows


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")  # a | inside a cell would split the row


def render_table(rows: list[dict[str, Any]]) -> str:
    header = (
        "| group | case | input | records | records/s | MB/s | peak RSS MB | wall s "
        "| ratio vs baselines (same run, same input) | notes |"
    )
    lines = [header, "|---|---|---|---:|---:|---:|---:|---:|---|---|"]
    for r in rows:
        ratios = ", ".join(f"{v}× {k}" for k, v in (r.get("ratios") or {}).items())
        name = f"*{r['case']}* (baseline)" if r.get("baseline") else f"**{r['case']}**"
        rps = f"{r['records_per_sec']:,.0f}" if r.get("records_per_sec") else "–"
        mbs = f"{r['mb_per_sec']:.1f}" if r.get("mb_per_sec") else "–"
        rss = r.get("peak_rss_mb")
        wall = r.get("wall_secs")
        cells = [
            r["group"],
            name,
            r.get("input") or "–",
            f"{r['records']:,}" if r.get("records") else "–",
            rps,
            mbs,
            f"{rss:.1f}" if isinstance(rss, int | float) and rss else "–",
            f"{wall:.3f}" if isinstance(wall, int | float) else "–",
            ratios or "–",
            r.get("notes", ""),
        ]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines)


def machine_summary(scale: float | None = None) -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "scale": bench_scale() if scale is None else scale,
    }


def load_results(path: Path) -> dict[str, Any]:
    """The stored results, in the current shape ({} when missing or unreadable). Files written
    before groups were recorded get one entry per group from their single machine line."""
    try:
        stored = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return {}
    if not isinstance(stored, dict) or not isinstance(stored.get("rows"), list):
        return {}
    groups = stored.get("groups")
    if not isinstance(groups, dict):
        machine = stored.get("machine") or {}
        groups = {
            r["group"]: {
                "measured_at": machine.get("measured_at"),
                "scale": machine.get("scale"),
                "bench_case": None,
                "cpus": machine.get("cpus"),
                "python": machine.get("python"),
            }
            for r in stored["rows"]
            if isinstance(r, dict) and "group" in r
        }
    failures = stored.get("failures")
    if isinstance(failures, list):  # old shape: "case: message" strings
        failures = {f.split(":", 1)[0]: f for f in failures if isinstance(f, str)}
    return {
        "machine": stored.get("machine") or {},
        "groups": groups,
        "rows": [r for r in stored["rows"] if isinstance(r, dict) and "group" in r],
        "failures": failures if isinstance(failures, dict) else {},
    }


def merge_results(
    previous: dict[str, Any],
    rows: list[dict[str, Any]],
    groups: dict[str, dict[str, Any]],
    ran: dict[str, str | None],
    machine: dict[str, Any],
    case_order: list[str],
) -> dict[str, Any]:
    """Fold one run into the stored results.

    `rows` (with rates) and `groups` (group -> when/how measured) come from this run; `ran` maps
    each case run to its failure (None when it ran cleanly). Every group this run produced replaces
    the stored group as a whole (so a ratio never mixes two runs); rows of a case that ran cleanly
    but no longer produce their old group are dropped too; everything else is kept as it was,
    with its own measured_at. Rows are ordered by `case_order`.
    """
    clean = {name for name, failure in ran.items() if failure is None}
    kept = [
        r
        for r in previous.get("rows", [])
        if r["group"] not in groups and (r.get("bench_case") is None or r.get("bench_case") not in clean)
    ]
    merged_rows = kept + rows
    order = {name: i for i, name in enumerate(case_order)}
    merged_rows.sort(key=lambda r: order.get(r.get("bench_case") or "", len(order)))  # stable
    live = {r["group"] for r in merged_rows}
    merged_groups = {g: meta for g, meta in (previous.get("groups") or {}).items() if g in live}
    merged_groups.update(groups)
    failures = {name: f for name, f in (previous.get("failures") or {}).items() if name not in ran}
    failures.update({name: f for name, f in ran.items() if f is not None})
    return {"machine": machine, "groups": merged_groups, "rows": merged_rows, "failures": failures}


def render_report(results: dict[str, Any]) -> str:
    from benchmarks.targets import evaluate, render_targets

    machine = results["machine"]
    groups = results["groups"]
    rows = results["rows"]
    text = [
        "# Benchmark results",
        "",
        f"Last run {machine.get('measured_at')} on {machine.get('cpus')} CPUs, Python {machine.get('python')} "
        "(`make bench`; raw figures in `benchmarks/results/latest.json`). A partial run "
        "(`benchmarks/run_pipe.py CASE ...`) replaces only the groups it re-ran; each group says when it was "
        "measured. Every ratio compares rows of one group measured in the same run, on the same input "
        "(the input column). MB = 10^6 bytes (MB/s, peak RSS MB); input sizes in MiB/GiB = 2^20/2^30 bytes.",
        "",
    ]
    small = sorted({g for g, meta in groups.items() if (meta.get("scale") or 1) < 1})
    if small:
        text += [
            f"**Scale below 1 for: {', '.join(small)}** — smoke-test figures from a reduced input, "
            "not the benchmark; size-defined targets are not evaluated for them.",
            "",
        ]
    text += ["## Targets", "", render_targets(evaluate(rows, groups)), ""]
    text += ["## Figures", "", render_table(rows), ""]
    text += [
        "## When each group was measured",
        "",
        "| group | measured at (UTC) | scale | run_pipe.py case | CPUs | Python |",
        "|---|---|---:|---|---:|---|",
    ]
    for group in dict.fromkeys(r["group"] for r in rows):
        meta = groups.get(group, {})
        text.append(
            "| "
            + " | ".join(
                _cell(c)
                for c in (
                    group,
                    meta.get("measured_at") or "?",
                    meta.get("scale") if meta.get("scale") is not None else "?",
                    meta.get("bench_case") or "?",
                    meta.get("cpus") or "?",
                    meta.get("python") or "?",
                )
            )
            + " |"
        )
    text.append("")
    failures = results.get("failures") or {}
    if failures:
        text += ["## Cases that failed in their last run", "", *[f"- {f}" for f in failures.values()], ""]
    return "\n".join(text)


def write_results(results: dict[str, Any], out_dir: Path | None = None) -> tuple[Path, Path]:
    """Write latest.json and RESULTS.md (under `out_dir` when given, else the standard places)."""
    json_path = (out_dir / "latest.json") if out_dir else (RESULTS_DIR / "latest.json")
    md_path = (out_dir / "RESULTS.md") if out_dir else (BENCH_DIR / "RESULTS.md")
    json_path.parent.mkdir(parents=True, exist_ok=True)
    md_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2) + b"\n")
    md_path.write_text(render_report(results))
    return json_path, md_path


def run_standalone(run: Any) -> None:
    """`python benchmarks/cases/X.py`: run one case in a scratch dir and print its rows (nothing
    is written; `benchmarks/run_pipe.py X` runs it into the results)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="harmony-bench-") as scratch:
        ctx = BenchContext(Path(scratch))
        try:
            print(render_table(with_rates(run(ctx))))
        finally:
            ctx.close()

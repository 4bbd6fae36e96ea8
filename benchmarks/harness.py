"""The whole-process benchmark harness: runs cases, measures wall time and peak RSS, prints ratios.

A case is a module in benchmarks/cases/ with `run(ctx) -> list[row]`. A row is one measured
process or pipe: `{"case", "group", "records", "bytes", "wall_secs", "peak_rss_mb", "baseline",
"notes"}`. Baselines are rows with `"baseline": True` measured in the same run and group; every
non-baseline row gets a ratio against each baseline of its group (records/s ours ÷ theirs), so a
figure is never reported without its yardstick.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"


def bench_scale() -> float:
    try:
        return max(0.01, float(os.environ.get("HARMONY_BENCH_SCALE", "1.0")))
    except ValueError:
        return 1.0


@dataclass
class Measurement:
    wall_secs: float
    peak_rss_mb: float
    returncode: int
    stderr_tail: str


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

    def bin(self, name: str) -> str:
        return str(Path(sys.executable).parent / name)

    def corpus(self) -> tuple[Path, int, int]:
        """The shared HEC event corpus (path, records, bytes): generated once per run."""
        if self._corpus is None:
            sys.path.insert(0, str(BENCH_DIR))
            from gen_corpus import write_corpus

            records = int(200_000 * self.scale)
            path = self.workdir / "hec-events-corpus.ndjson"
            size = write_corpus(path, records, seed=42)
            self._corpus = (path, records, size)
        return self._corpus

    def moto_endpoint(self) -> str:
        if self._moto is None:
            import socket

            from moto.server import ThreadedMotoServer

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

    def measure(
        self,
        argv: list[str] | str,
        stdin_path: str | os.PathLike[str] | None = None,
        stdout_path: str | os.PathLike[str] | None = None,
        env: dict[str, str] | None = None,
        check: bool = True,
    ) -> Measurement:
        """Run a command (argv list, or a bash string for pipes) and measure it.

        Peak RSS is the sum over the process tree of each process's VmHWM (its own high-water
        mark, which the kernel resets at exec), polled every 10 ms; for a single process that is
        its exact peak, for a pipe an upper bound of the concurrent peak. (ru_maxrss is useless
        here: it inherits the forking Python's RSS.)
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
            while True:
                try:
                    pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                except ChildProcessError:
                    break
                if pid:
                    wall = time.perf_counter() - started
                    proc.returncode = os.waitstatus_to_exitcode(status)
                    break
                try:
                    tree = [root, *root.children(recursive=True)]
                except psutil.Error:
                    tree = [root]
                for process in tree:
                    hwm = _vm_hwm_kb(process.pid)
                    if hwm is not None:
                        hwm_kb[process.pid] = max(hwm, hwm_kb.get(process.pid, 0))
                time.sleep(0.01)
        tail = stderr_path.read_text(errors="replace")[-2000:]
        stderr_path.unlink(missing_ok=True)
        if check and proc.returncode != 0:
            shown = argv if shell else " ".join(map(str, argv))
            raise RuntimeError(f"benchmark command failed ({proc.returncode}): {shown[:200]}\n{tail}")
        del usage
        return Measurement(wall, sum(hwm_kb.values()) / 1024, proc.returncode, tail)


def _vm_hwm_kb(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status", "rb") as status:
            for line in status:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def row(
    group: str,
    case: str,
    records: int,
    size_bytes: int,
    m: Measurement,
    *,
    baseline: bool = False,
    notes: str = "",
) -> dict[str, Any]:
    return {
        "case": case,
        "group": group,
        "records": records,
        "bytes": size_bytes,
        "wall_secs": round(m.wall_secs, 4),
        "peak_rss_mb": round(m.peak_rss_mb, 1),
        "baseline": baseline,
        "notes": notes,
    }


def with_rates(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Add records/s, MB/s and ratios against every baseline row of the same group."""
    for r in rows:
        secs = r.get("wall_secs") or 0
        r["records_per_sec"] = round(r["records"] / secs, 1) if secs and r.get("records") else None
        r["mb_per_sec"] = round(r["bytes"] / 2**20 / secs, 2) if secs and r.get("bytes") else None
    for r in rows:
        if r.get("baseline") or r.get("records_per_sec") is None:
            continue
        ratios = {}
        for base in rows:
            if base.get("baseline") and base["group"] == r["group"] and base.get("records_per_sec"):
                ratios[base["case"]] = round(r["records_per_sec"] / base["records_per_sec"], 2)
        r["ratios"] = ratios
    return rows


def render_table(rows: list[dict[str, Any]]) -> str:
    header = (
        "| group | case | records | records/s | MB/s | peak RSS MB | wall s | ratio vs baselines (same run) | notes |"
    )
    lines = [header, "|---|---|---:|---:|---:|---:|---:|---|---|"]
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
            f"{r['records']:,}" if r.get("records") else "–",
            rps,
            mbs,
            f"{rss:.1f}" if isinstance(rss, int | float) and rss else "–",
            f"{wall:.3f}" if isinstance(wall, int | float) else "–",
            ratios or "–",
            r.get("notes", ""),
        ]
        # a | inside a cell would split the Markdown row
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


def machine_summary() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "scale": bench_scale(),
    }


def write_results(rows: list[dict[str, Any]], failures: list[str]) -> None:
    RESULTS_DIR.mkdir(exist_ok=True)
    summary = {"machine": machine_summary(), "rows": rows, "failures": failures}
    (RESULTS_DIR / "latest.json").write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2))
    machine = summary["machine"]
    text = [
        "# Benchmark results",
        "",
        f"Measured {machine['measured_at']} on {machine['cpus']} CPUs, Python {machine['python']}, "
        f"scale {machine['scale']} (`make bench`; raw figures in `benchmarks/results/latest.json`).",
        "Every ratio compares against a baseline measured in the same run, on the same input.",
        "",
        render_table(rows),
        "",
    ]
    if failures:
        text += ["## Cases that did not run", "", *[f"- {f}" for f in failures], ""]
    (BENCH_DIR / "RESULTS.md").write_text("\n".join(text))

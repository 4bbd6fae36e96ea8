"""gzip (zlib, zlib-ng, ISA-L) and zstd at each level on alert NDJSON: speed and ratio, one core.

    python benchmarks/compression_levels.py                 # both corpora, ~60 MB each
    python benchmarks/compression_levels.py --mb 20 --corpus s3

zlib-ng and ISA-L bodies are compressed the way s3-batch writes them: one gzip member per
object made of 256 KiB segments, each raw deflate primed with the 32 KiB before it and ended
with a sync flush (s3-batch's `_GzipSegments`; a commit after every MiB of input adds no more
flushes than that). Python's zlib is compressed the way s3-batch wrote bodies before: one
stream fed in 64 KiB slices, a sync flush after every MiB.
MB/s is input bytes per second of this process's CPU time (one thread); ratio is input bytes
over stored bytes. Every output is decompressed again and compared with the input.

Corpora: `s3` is the benchmark's alert records (`cases/s3_batch.py`); `alerts` is harmony-alerts
output over the HEC benchmark corpus (`gen_corpus.py`, `--all`), the shape s3-batch stores in a
collection chain. The table in docs/s3-batch.md comes from this script.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import zstandard
from isal import isal_zlib
from zlib_ng import zlib_ng

HERE = Path(__file__).resolve().parent
SLICE_BYTES = 64 * 1024
SEGMENT_BYTES = 256 * 1024
WINDOW_BYTES = 32 * 1024
FLUSH_EVERY_BYTES = 1 << 20

LIBRARIES: dict[str, tuple[Any, tuple[int, ...]]] = {
    "zlib": (zlib, (1, 3, 6, 9)),
    "zlib-ng": (zlib_ng, (1, 2, 3, 4, 5, 6, 7, 8, 9)),
    "isal": (isal_zlib, (0, 1, 2, 3)),
}
ZSTD_LEVELS = (1, 3, 6)


def segmented_body(module: Any, level: int, data: bytes) -> bytes:
    out = [b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"]
    for start in range(0, len(data), SEGMENT_BYTES):
        window = data[max(0, start - WINDOW_BYTES) : start]
        obj = (
            module.compressobj(level, module.DEFLATED, -15, zdict=window)
            if window
            else module.compressobj(level, module.DEFLATED, -15)
        )
        out.append(obj.compress(data[start : start + SEGMENT_BYTES]) + obj.flush(module.Z_SYNC_FLUSH))
    out.append(module.compressobj(level, module.DEFLATED, -15).flush(module.Z_FINISH))
    out.append(struct.pack("<II", zlib.crc32(data), len(data) & 0xFFFFFFFF))
    return b"".join(out)


def _sliced_body(obj: Any, sync_flush: int, finish: int, data: bytes) -> bytes:
    """Compress `data` the way s3-batch writes a body: in slices, with a sync flush every
    FLUSH_EVERY_BYTES (what the spool's crash safety costs), then finish."""
    out = []
    since_flush = 0
    for start in range(0, len(data), SLICE_BYTES):
        piece = data[start : start + SLICE_BYTES]
        out.append(obj.compress(piece))
        since_flush += len(piece)
        if since_flush >= FLUSH_EVERY_BYTES:
            out.append(obj.flush(sync_flush))
            since_flush = 0
    out.append(obj.flush(finish))
    return b"".join(out)


def gzip_body(module: Any, level: int, data: bytes) -> bytes:
    return _sliced_body(module.compressobj(level, module.DEFLATED, 31), module.Z_SYNC_FLUSH, module.Z_FINISH, data)


def zstd_body(level: int, data: bytes) -> bytes:
    obj = zstandard.ZstdCompressor(level=level, write_checksum=True).compressobj()
    return _sliced_body(obj, zstandard.COMPRESSOBJ_FLUSH_BLOCK, zstandard.COMPRESSOBJ_FLUSH_FINISH, data)


def measure(
    compress: Callable[[bytes], bytes], data: bytes, decompress: Callable[[bytes], bytes]
) -> tuple[float, float]:
    """(MB/s of CPU time, ratio), best of two runs; checks the round trip."""
    best = float("inf")
    stored = b""
    for _ in range(2):
        started = time.process_time()
        stored = compress(data)
        best = min(best, time.process_time() - started)
    if decompress(stored) != data:
        raise RuntimeError("round trip failed")
    return len(data) / best / 1e6, len(data) / len(stored)


def make_corpus(name: str, target_bytes: int, workdir: Path) -> bytes:
    if name == "s3":
        spec = importlib.util.spec_from_file_location("_s3_case", HERE / "cases" / "s3_batch.py")
        assert spec is not None and spec.loader is not None
        case = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(case)
        path = workdir / "s3.ndjson"
        subprocess.run([sys.executable, "-c", case.GENERATE, str(target_bytes), str(path), "50000"], check=True)
        return path.read_bytes()[:target_bytes].rsplit(b"\n", 1)[0] + b"\n"
    events = workdir / "events.ndjson"
    alerts = workdir / "alerts.ndjson"
    records = max(1000, target_bytes // 1200)  # an alert is ~2x its event
    subprocess.run(
        [sys.executable, str(HERE / "gen_corpus.py"), "--records", str(records), "--out", str(events)],
        check=True,
        capture_output=True,
    )
    harmony_alerts = Path(sys.executable).parent / "harmony-alerts"
    with events.open("rb") as source, alerts.open("wb") as sink:
        subprocess.run(
            [str(harmony_alerts), "--all", "--no-dedupe"],
            stdin=source,
            stdout=sink,
            stderr=subprocess.DEVNULL,
            check=True,
        )
    return alerts.read_bytes()[:target_bytes].rsplit(b"\n", 1)[0] + b"\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=60.0, help="input size per corpus (MB)")
    parser.add_argument("--corpus", choices=("s3", "alerts", "both"), default="both")
    args = parser.parse_args(argv)
    names = ("s3", "alerts") if args.corpus == "both" else (args.corpus,)
    print("| corpus | library | level | MB/s (1 core) | ratio |\n|---|---|---:|---:|---:|")
    with tempfile.TemporaryDirectory(prefix="compression-levels-") as scratch:
        for name in names:
            data = make_corpus(name, int(args.mb * 1e6), Path(scratch))
            label = f"{name} ({len(data) / 1e6:.0f} MB)"
            for lib, (module, levels) in LIBRARIES.items():
                for level in levels:
                    body = gzip_body if lib == "zlib" else segmented_body
                    speed, ratio = measure(lambda d, m=module, lv=level, b=body: b(m, lv, d), data, gzip.decompress)
                    print(f"| {label} | gzip {lib} | {level} | {speed:.0f} | {ratio:.2f} |", flush=True)
            for level in ZSTD_LEVELS:
                speed, ratio = measure(
                    lambda d, lv=level: zstd_body(lv, d),
                    data,
                    lambda s: zstandard.ZstdDecompressor().decompressobj().decompress(s),
                )
                print(f"| {label} | zstd | {level} | {speed:.0f} | {ratio:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

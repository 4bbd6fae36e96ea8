"""The wheel as a user gets it: built from the checkout, installed non-editable in a fresh venv,
every command run from there, in a directory with no checkout nearby.

The wheel is built (`pip wheel --no-deps`) from a copy of exactly what the Dockerfile copies
(pyproject.toml, README.md, plugins/, schemas/), so the image build gets all it needs too. The
fresh venv holds only the wheel; its dependencies come from this test venv's site-packages via a
.pth line (added after the fresh venv's own site-packages, and without the editable finder, whose
own .pth is not processed there). Building needs setuptools from PyPI (pip's build isolation).
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import orjson
import pytest

from harmony_pipes import __version__
from tests.conftest import FIXTURES, REPO_ROOT
from tests.helpers.schemas import assert_valid

pytestmark = [pytest.mark.integration, pytest.mark.slow]

COMMANDS = ("harmony-pipes", "harmony-events", "harmony-alerts", "s3-batch", "aws-discovery", "hec-emulator")
BUILD_CONTEXT = ("pyproject.toml", "README.md", "plugins", "schemas")  # = .dockerignore's allow-list


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bin/ directory of a fresh venv holding only the harmony-pipes wheel."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"
    source.mkdir()
    for name in BUILD_CONTEXT:
        src = REPO_ROOT / name
        if src.is_dir():
            shutil.copytree(src, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(src, source / name)
    dist = root / "dist"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    build = subprocess.run([*pip, "wheel", "--no-deps", "-w", str(dist), str(source)], capture_output=True, timeout=300)
    assert build.returncode == 0, build.stderr.decode()[-3000:]
    (wheel,) = dist.glob("harmony_pipes-*.whl")
    assert wheel.name == f"harmony_pipes-{__version__}-py3-none-any.whl"
    names = zipfile.ZipFile(wheel).namelist()
    for schema in (REPO_ROOT / "schemas").glob("*.schema.json"):
        assert f"harmony_pipes/schemas/{schema.name}" in names

    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    install = subprocess.run(
        [*pip, "--python", str(python), "install", "--no-deps", "--no-index", str(wheel)],
        capture_output=True,
        timeout=300,
    )
    assert install.returncode == 0, install.stderr.decode()[-3000:]
    fresh_site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    Path(fresh_site, "zz-test-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv / "bin"


def run(bin_dir: Path, args: list[str], cwd: Path, data: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HARMONY_", "S3_BATCH_", "AWS_", "PYTHON"))}
    return subprocess.run(
        [str(bin_dir / args[0]), *args[1:]], input=data, capture_output=True, cwd=cwd, env=env, timeout=60
    )


def test_the_package_imports_from_the_fresh_venv(installed: Path, tmp_path: Path) -> None:
    code = (
        "import importlib.metadata, json, harmony_pipes\n"
        "from harmony_pipes._core.schemas import schema_path\n"
        "print(json.dumps([harmony_pipes.__file__, str(schema_path('harness-audit-event')),"
        " importlib.metadata.version('harmony-pipes'), harmony_pipes.__version__]))"
    )
    proc = subprocess.run([str(installed / "python"), "-c", code], capture_output=True, cwd=tmp_path, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()
    module_file, schema_file, metadata_version, attribute_version = json.loads(proc.stdout)
    venv = str(installed.parent)
    assert module_file.startswith(venv) and schema_file.startswith(venv), (module_file, schema_file)
    assert metadata_version == attribute_version == __version__


@pytest.mark.parametrize("name", COMMANDS)
def test_help_and_version_of_every_command(installed: Path, tmp_path: Path, name: str) -> None:
    help_result = run(installed, [name, "--help"], tmp_path)
    assert help_result.returncode == 0, help_result.stderr
    assert b"Examples:" in help_result.stdout
    version = run(installed, [name, "--version"], tmp_path)
    assert (version.returncode, version.stdout) == (0, f"{name} {__version__}\n".encode())


def test_alerts_in_ocsf(installed: Path, tmp_path: Path) -> None:
    event = (FIXTURES / "hec-events-sample.ndjson").read_bytes().splitlines()[0] + b"\n"
    result = run(installed, ["harmony-alerts", "--all", "--format", "ocsf"], tmp_path, event)
    assert result.returncode == 0, result.stderr
    (finding,) = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert finding["class_uid"] == 2004
    assert_valid("alert-ocsf", finding)
    stats = orjson.loads(result.stderr.decode().splitlines()[-1])["stats"]
    assert stats["version"] == __version__ and stats["records_in"] == 1


def test_s3_batch_validates_harness_audit_records(installed: Path, tmp_path: Path) -> None:
    """The schema comes from the installed package: a valid record is stored, an invalid one is
    dead-lettered with the schema's reason (before the fix: exit 2, schema not found)."""
    good = json.loads((FIXTURES / "harness" / "audit-event-sample.json").read_text())
    bad = json.loads((FIXTURES / "harness" / "broken-missing-event-id.json").read_text())
    data = orjson.dumps(good) + b"\n" + orjson.dumps(bad) + b"\n"
    out, dead = tmp_path / "out", tmp_path / "dead.ndjson"
    args = ["s3-batch", "--validate", "harness-audit", "--dest", f"file://{out}/", "--dead-letter", str(dead)]
    result = run(installed, args, tmp_path, data)
    assert result.returncode == 0, result.stderr
    (receipt,) = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert receipt["records"] == 1
    (body,) = [p for p in out.rglob("*") if p.is_file()]
    assert [orjson.loads(line) for line in gzip.decompress(body.read_bytes()).splitlines()] == [good]
    (letter,) = [orjson.loads(line) for line in dead.read_bytes().splitlines()]
    assert letter["error"] == "harness-audit: missing auditEventId" and letter["line_no"] == 2
    stats = orjson.loads(result.stderr.decode().splitlines()[-1])["stats"]
    assert stats["bad_records"] == 1 and stats["version"] == __version__


def test_a_chain_runs_from_the_fresh_venv(installed: Path, tmp_path: Path) -> None:
    """`harmony-pipes chain` finds its stages' commands in the installed package."""
    events = (FIXTURES / "hec-events-sample.ndjson").read_bytes()
    count = len([line for line in events.splitlines() if line.strip()])
    out = tmp_path / "out"
    text = f"harmony-alerts --all --no-dedupe --format ocsf | s3-batch --dest file://{out}/"
    result = run(installed, ["harmony-pipes", "chain", text], tmp_path, events)
    assert result.returncode == 0, result.stderr
    stored = [
        orjson.loads(line) for body in out.rglob("*.gz") for line in gzip.decompress(body.read_bytes()).splitlines()
    ]
    assert len(stored) == count and {finding["class_uid"] for finding in stored} == {2004}
    stats = orjson.loads(result.stderr.decode().splitlines()[-1])["stats"]
    assert [stage["command"] for stage in stats["stages"]] == ["harmony-alerts", "s3-batch"]

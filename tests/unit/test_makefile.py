"""`make demo` installs the runtime only; `make test` (and lint, bench) the test extras."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def dry_run(tmp_path: Path, target: str) -> str:
    """`make -n TARGET` in a copy of the Makefile with no .venv yet (a fresh clone)."""
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    for name in ("Makefile", "pyproject.toml", ".ci/constraints.txt"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        shutil.copy(REPO_ROOT / name, tmp_path / name)
    result = subprocess.run([make, "-n", target, "PYTHON=python3"], cwd=tmp_path, capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode()


def test_make_demo_installs_the_runtime_only(tmp_path: Path) -> None:
    steps = dry_run(tmp_path, "demo")
    installs = [line for line in steps.splitlines() if "pip install" in line and "--upgrade pip" not in line]
    assert installs == [".venv/bin/python -m pip install --quiet -c .ci/constraints.txt -e ."], steps
    assert "[test]" not in steps and "-m harmony_pipes.demo" in steps


@pytest.mark.parametrize("target", ["test", "lint", "install"])
def test_the_other_targets_install_the_test_extras(tmp_path: Path, target: str) -> None:
    steps = dry_run(tmp_path, target)
    assert ".venv/bin/python -m pip install --quiet -c .ci/constraints.txt -e '.[test]'" in steps
    assert "touch .venv/.installed-test .venv/.installed-runtime" in steps


def test_the_runtime_needs_fewer_packages_than_the_tests() -> None:
    import tomllib

    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    runtime = {d.split(">")[0].split("[")[0] for d in project["dependencies"]}
    test = {d.split(">")[0].split("[")[0] for d in project["optional-dependencies"]["test"]}
    assert not runtime & {"pytest", "moto", "jsonschema", "ruff", "pyyaml"}
    assert {"pytest", "moto", "pyyaml"} <= test


def test_every_dependency_is_pinned_for_ci() -> None:
    """CI installs pinned versions: each direct dependency has one `==` line in the constraints."""
    import tomllib

    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    pins = {}
    for line in (REPO_ROOT / ".ci/constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.lower().replace("_", "-")] = version
    wanted = project["dependencies"] + project["optional-dependencies"]["test"]
    names = {re.split(r"[<>=!\[ ;]", spec, maxsplit=1)[0].lower().replace("_", "-") for spec in wanted}
    assert names - pins.keys() == set()
    assert pins["moto"] != "5.2.6"

"""deploy/, the Dockerfile and the excerpt in docs/scaling.md, checked without a cluster or a
container runtime: manifests parse, every command line is accepted by its command's own parser,
ports and probes match --metrics-addr, secrets come from a Secret, images are this version's."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from harmony_pipes import __version__
from tests.helpers.cmdline import FUTURE_OPTIONS, UMBRELLA, Parsed, click_command, console_scripts, parse_argv

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY = REPO_ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
SYSTEMD = DEPLOY / "systemd"
DOCKERFILE = REPO_ROOT / "Dockerfile"
SCALING_DOC = REPO_ROOT / "docs" / "scaling.md"
IMAGE = f"harmony-pipes:{__version__}"
METRICS_PATH = "/healthz"


# -- reading the files ----------------------------------------------------------------------


def k8s_files() -> list[Path]:
    return sorted(K8S.glob("*.yaml"))


def k8s_documents() -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for path in k8s_files():
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                docs.append((path.name, doc))
    return docs


def doc_yaml_blocks() -> list[tuple[str, Any]]:
    """The ```yaml blocks of docs/scaling.md (excerpts of pod specs)."""
    blocks = re.findall(r"```yaml\n(.*?)```", SCALING_DOC.read_text(), flags=re.S)
    return [(f"docs/scaling.md block {i}", yaml.safe_load(block)) for i, block in enumerate(blocks)]


def find_containers(node: Any) -> Iterator[dict[str, Any]]:
    """Every dict with an `image` (a container), wherever it sits in a manifest or an excerpt."""
    if isinstance(node, dict):
        if "image" in node and ("command" in node or "args" in node):
            yield node
        for value in node.values():
            yield from find_containers(value)
    elif isinstance(node, list):
        for value in node:
            yield from find_containers(value)


def pod_specs(node: Any) -> Iterator[dict[str, Any]]:
    """Every dict holding `containers` (a pod spec, or a doc excerpt of one)."""
    if isinstance(node, dict):
        if "containers" in node:
            yield node
        for value in node.values():
            yield from pod_specs(value)
    elif isinstance(node, list):
        for value in node:
            yield from pod_specs(value)


def container_argv(container: dict[str, Any]) -> list[str]:
    return [str(part) for part in (*container.get("command", []), *container.get("args", []))]


def dockerfile_stages() -> list[tuple[str, list[tuple[str, str]]]]:
    """[(FROM line, [(INSTRUCTION, rest), ...]), ...], continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    stages: list[tuple[str, list[tuple[str, str]]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        if word.upper() == "FROM":
            stages.append((rest, []))
        elif stages:
            stages[-1][1].append((word.upper(), rest))
    return stages


def dockerfile_argv() -> list[str]:
    _, final = dockerfile_stages()[-1]
    argv: list[str] = []
    for instruction in ("ENTRYPOINT", "CMD"):
        for word, rest in final:
            if word == instruction:
                assert rest.startswith("["), f"{instruction} must be the exec (JSON) form: {rest}"
                argv += json.loads(rest)
    return argv


def unit_settings(path: Path) -> list[tuple[str, str]]:
    return [
        tuple(line.split("=", 1))  # type: ignore[misc]
        for line in path.read_text().splitlines()
        if "=" in line and not line.startswith(("#", ";", "["))
    ]


def unit_exec_argv(path: Path) -> list[str]:
    (exec_start,) = [value for key, value in unit_settings(path) if key == "ExecStart"]
    return shlex.split(exec_start.lstrip("-@:+!"))


def command_lines() -> list[tuple[str, list[str]]]:
    lines = [("Dockerfile CMD", dockerfile_argv())]
    lines += [(f"systemd/{unit.name}", unit_exec_argv(unit)) for unit in sorted(SYSTEMD.glob("*.service"))]
    for where, doc in [*k8s_documents(), *doc_yaml_blocks()]:
        for container in find_containers(doc):
            lines.append((f"{where} container {container['name']}", container_argv(container)))
    return lines


LINES = command_lines()


def parsed_lines() -> list[tuple[str, Parsed]]:
    return [(where, parse_argv(argv)) for where, argv in LINES]


# -- the checks -----------------------------------------------------------------------------


def test_every_manifest_parses_and_kustomize_lists_them() -> None:
    docs = k8s_documents()
    kinds = {(doc["kind"], doc["metadata"]["name"]) for _, doc in docs if doc["kind"] != "Kustomization"}
    assert {("Deployment", "harmony-collect"), ("Deployment", "harmony-discovery"), ("Secret", "harmony-api")} <= kinds
    for _, doc in docs:
        assert doc["apiVersion"] and doc["kind"]
    (kustomization,) = [doc for _, doc in docs if doc["kind"] == "Kustomization"]
    listed = set(kustomization["resources"])
    assert listed == {p.name for p in k8s_files()} - {"kustomization.yaml", "secret.example.yaml"}
    assert [(i["name"], i["newTag"]) for i in kustomization["images"]] == [("harmony-pipes", __version__)]


def test_the_command_lines_were_found() -> None:
    """Dockerfile CMD, 2 units, 2 Deployments, the docs excerpt."""
    assert len(LINES) == 6, LINES
    assert all(argv for _, argv in LINES)


@pytest.mark.parametrize(("where", "argv"), LINES, ids=[where for where, _ in LINES])
def test_every_command_line_is_accepted_by_its_own_parser(where: str, argv: list[str]) -> None:
    parsed = parse_argv(argv)  # raises click's UsageError / BadParameter / NoSuchOption if refused
    assert parsed.command is not None, f"{where}: {argv[0]} is not one of our commands"
    for stage in parsed.stages:
        assert stage.command is not None and stage.command != UMBRELLA, f"{where}: stage {stage.argv}"
    if parsed.command == UMBRELLA and parsed.path[:1] == ("chain",):
        assert [stage.command for stage in parsed.stages][-1] == "s3-batch", "the chain ends in s3-batch"


def test_options_from_the_rest_of_issue_13_are_known_to_the_parsers() -> None:
    """The only check skipped while other branches are unmerged: --metrics-addr / --metrics-file
    and `harmony-pipes` itself, which the manifests use already."""
    missing = []
    for where, parsed in parsed_lines():
        for inner in parsed.walk():
            if inner.not_checked:
                missing.append(f"{where}: {inner.not_checked}")
            missing += [f"{where}: {inner.command} does not know {option} yet" for option in inner.unknown_future]
    if missing:
        pytest.skip("not in this checkout yet: " + "; ".join(sorted(set(missing))))


def metrics_port(parsed: Parsed, argv: list[str]) -> tuple[str, int] | None:
    """(host, port) of --metrics-addr wherever it sits in the line (chain or stage)."""
    for inner in parsed.walk():
        if "--metrics-addr" in inner.argv:
            host, _, port = inner.argv[inner.argv.index("--metrics-addr") + 1].rpartition(":")
            return host, int(port)
    return None


@pytest.mark.parametrize(
    ("where", "doc"),
    [(w, d) for w, d in k8s_documents() if d["kind"] in ("Deployment", "CronJob", "StatefulSet", "DaemonSet")],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_ports_and_probes_match_the_metrics_addr(where: str, doc: dict[str, Any]) -> None:
    template = doc["spec"]["template"]
    (container,) = list(find_containers(template))
    argv = container_argv(container)
    addr = metrics_port(parse_argv(argv), argv)
    assert addr is not None, f"{where}: no --metrics-addr"
    host, port = addr
    assert host == "0.0.0.0", "the kubelet probes the pod IP: listen on every interface"
    (declared,) = [p for p in container["ports"] if p["containerPort"] == port]
    assert declared["name"] == "metrics" and declared.get("protocol", "TCP") == "TCP"
    for probe in ("readinessProbe", "livenessProbe"):
        get = container[probe]["httpGet"]
        assert get["path"] == METRICS_PATH and get["port"] in ("metrics", port), (probe, get)
    annotations = template["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(port) and annotations["prometheus.io/path"] == "/metrics"
    expose = [rest for word, rest in dockerfile_stages()[-1][1] if word == "EXPOSE"]
    assert str(port) in " ".join(expose).split(), "the Dockerfile EXPOSEs the metrics port"


def test_pods_run_this_versions_image_as_non_root() -> None:
    for where, doc in [*k8s_documents(), *doc_yaml_blocks()]:
        for container in find_containers(doc):
            assert container["image"] == IMAGE, f"{where}: {container['image']} (build: docker build -t {IMAGE} .)"
        for spec in pod_specs(doc):
            if "securityContext" in spec:  # full pod specs (the docs excerpt shows containers only)
                assert spec["securityContext"]["runAsNonRoot"] is True
                assert spec["securityContext"]["runAsUser"] == 10001


def test_secrets_come_from_a_secret_never_from_a_value_or_argv() -> None:
    secrets = {doc["metadata"]["name"]: doc for _, doc in k8s_documents() if doc["kind"] == "Secret"}
    for where, doc in [*k8s_documents(), *doc_yaml_blocks()]:
        for spec in pod_specs(doc):
            volumes = {v["name"]: v for v in spec.get("volumes", [])}
            for container in spec["containers"]:
                assert not any("ACCESS_KEY" in arg or "SECRET" in arg for arg in container_argv(container))
                env = {e["name"]: e for e in container.get("env", [])}
                assert "HARMONY_ACCESS_KEY" not in env and "AWS_SECRET_ACCESS_KEY" not in env, where
                if "HARMONY_CLIENT_ID" in env:
                    ref = env["HARMONY_CLIENT_ID"]["valueFrom"]["secretKeyRef"]
                    assert ref["name"] in secrets and ref["key"] in secrets[ref["name"]]["stringData"]
                if "HARMONY_ACCESS_KEY_FILE" in env:
                    key_file = Path(env["HARMONY_ACCESS_KEY_FILE"]["value"])
                    (mount,) = [m for m in container["volumeMounts"] if Path(m["mountPath"]) == key_file.parent]
                    secret = volumes[mount["name"]]["secret"]
                    assert secret["secretName"] in secrets and mount.get("readOnly") is True
                    assert [i["path"] for i in secret["items"]] == [key_file.name]
                    assert secret["items"][0]["key"] in secrets[secret["secretName"]]["stringData"]


def test_dockerfile_is_multi_stage_slim_and_non_root() -> None:
    stages = dockerfile_stages()
    assert len(stages) >= 2
    build_from, build = stages[0]
    final_from, final = stages[-1]
    arg_image = re.search(r"ARG PYTHON_IMAGE=(\S+)", DOCKERFILE.read_text())
    assert arg_image and "-slim" in arg_image.group(1)
    assert final_from.startswith("${PYTHON_IMAGE}") and " AS " in build_from
    assert any(word == "RUN" and "pip wheel" in rest for word, rest in build)
    runs = " ".join(rest for word, rest in final if word == "RUN")
    assert "from=build" in runs and "--no-index" in runs, "the runtime installs the build stage's wheels only"
    for compiler in ("gcc", "g++", "build-essential", "clang", "make "):
        assert compiler not in runs, f"{compiler} in the final image"
    (user,) = [rest for word, rest in final if word == "USER"]
    assert user.split(":")[0] not in ("root", "0")
    assert [word for word, _ in final][-1] in ("CMD", "ENTRYPOINT")
    context = (REPO_ROOT / ".dockerignore").read_text().split()
    assert {"!pyproject.toml", "!README.md", "!plugins/", "!schemas/"} <= set(context)


@pytest.mark.parametrize("unit", sorted(SYSTEMD.glob("*.service")), ids=lambda p: p.name)
def test_systemd_units_run_installed_commands(unit: Path) -> None:
    argv = unit_exec_argv(unit)
    program = Path(argv[0])
    assert program.parent == Path("/usr/local/bin") and program.name in (*console_scripts(), UMBRELLA)
    settings = dict(unit_settings(unit))
    assert settings["DynamicUser"] == "yes" and settings["RestartPreventExitStatus"] == "2"
    assert "HARMONY_ACCESS_KEY=" not in unit.read_text()  # a credential file, never the key itself


@pytest.mark.parametrize("unit", sorted(SYSTEMD.glob("*.service")), ids=lambda p: p.name)
def test_systemd_analyze_verify_accepts_the_units(unit: Path, tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    program = unit_exec_argv(unit)[0]
    local = Path(sys.executable).parent / Path(program).name
    if click_command(Path(program).name) is None or not local.exists():
        pytest.skip(f"{Path(program).name} is not installed in this checkout yet")
    etc = tmp_path / "etc"
    etc.mkdir()
    for example in SYSTEMD.glob("*.env.example"):
        shutil.copy(example, etc / example.name.removesuffix(".example"))
    (etc / "access-key").write_text("not-a-real-key\n")
    text = unit.read_text().replace("/usr/local/bin/", f"{local.parent}/").replace("/etc/harmony-pipes/", f"{etc}/")
    copy = tmp_path / unit.name
    copy.write_text(text)
    result = subprocess.run([analyze, "verify", str(copy)], capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr.decode()
    assert not result.stdout.strip() and not result.stderr.strip(), (result.stdout + result.stderr).decode()


def test_kustomize_builds_the_manifests() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed")
    result = subprocess.run([kubectl, "kustomize", str(K8S)], capture_output=True, timeout=120)
    if result.returncode != 0 and b"unknown command" in result.stderr:
        pytest.skip("this kubectl has no kustomize")
    assert result.returncode == 0, result.stderr.decode()
    kinds = sorted(doc["kind"] for doc in yaml.safe_load_all(result.stdout) if doc)
    assert kinds == ["Deployment", "Deployment", "Namespace", "PersistentVolumeClaim", "PersistentVolumeClaim",
                     "ServiceAccount"]  # fmt: skip


def test_checker_flags_what_it_cannot_check_yet() -> None:
    """The skip above is honest: an unknown option that is not one of FUTURE_OPTIONS fails."""
    parsed = parse_argv(["aws-discovery", "--once", "--tags", "env", "--metrics-addr", "0.0.0.0:1"])
    assert parsed.command == "aws-discovery"
    if "--metrics-addr" in parsed.unknown_future:
        assert "--metrics-addr" in FUTURE_OPTIONS
    import click

    with pytest.raises(click.NoSuchOption):
        parse_argv(["aws-discovery", "--metrics-port", "9464"])

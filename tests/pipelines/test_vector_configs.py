"""The shipped Vector configs (no Vector binary here): they parse, use the settings the exec
traps require, and every command line in them is accepted by the command's own click parser.
The same command-line check runs over the Fluent Bit configs and the shell recipes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tests.helpers.pipelines import (
    check_argv,
    fluent_bit_exec_commands,
    interpolate_vector,
    ours,
    split_shell,
    vector_exec_commands,
)

REPO = Path(__file__).resolve().parents[2]
VECTOR_CONFIGS = sorted((REPO / "pipelines" / "vector").glob("*.yaml"))
FLUENT_BIT_CONFIGS = sorted(
    p for p in (REPO / "pipelines" / "fluent-bit").glob("*.conf") if p.name != "parsers.conf"
) + sorted((REPO / "pipelines" / "fluent-bit").glob("*.yaml"))
SHELL_RECIPES = sorted((REPO / "pipelines" / "shell").glob("*.sh"))
ENV = {
    "HARMONY_STATE_ROOT": "/var/lib/harmony-pipes",
    "HARMONY_S3_BUCKET": "my-bucket",
    "HARMONY_RECEIPTS_DIR": "/var/log/harmony-pipes",
    "HARMONY_INVENTORY_DIR": "/var/log/harmony-pipes",
    "AWS_REGION": "us-east-1",
}


def load_vector(path: Path) -> dict:
    return yaml.safe_load(interpolate_vector(path.read_text(), ENV))


def test_the_three_vector_flows_are_shipped() -> None:
    names = {p.name for p in VECTOR_CONFIGS}
    assert {"harmony-to-s3.yaml", "harmony-chain-to-s3.yaml", "aws-discovery.yaml"} <= names


@pytest.mark.parametrize("path", VECTOR_CONFIGS, ids=lambda p: p.name)
def test_vector_exec_sources_avoid_the_traps(path: Path) -> None:
    config = load_vector(path)
    assert config["schema"]["log_namespace"] is True, "exec fields would overwrite the record's keys"
    sources = [s for s in config["sources"].values() if s["type"] == "exec"]
    assert sources
    for source in sources:
        assert source["mode"] in ("scheduled", "streaming")
        assert source["include_stderr"] is False, "stderr lines would become events"
        assert source["decoding"]["codec"] == "json"
        assert source["maximum_buffer_size_bytes"] >= 1_000_000
        assert isinstance(source["command"], list)
    for sink in config["sinks"].values():
        assert set(sink["inputs"]) <= set(config["sources"]) | set(config.get("transforms") or {})
        if sink["type"] in ("aws_s3", "file"):
            assert sink["framing"]["method"] == "newline_delimited", "json without framing = JSON array"
            assert sink["encoding"]["codec"] == "json"


def test_vector_streaming_and_scheduled_modes_fit_their_commands() -> None:
    for path in VECTOR_CONFIGS:
        for source in load_vector(path)["sources"].values():
            script = " ".join(source["command"])
            if source["mode"] == "scheduled":
                assert "--once" in script, f"{path.name}: a scheduled run must end by itself"
            else:
                assert "--once" not in script and "--interval-secs" in script


@pytest.mark.parametrize("path", VECTOR_CONFIGS, ids=lambda p: p.name)
def test_vector_command_lines_use_only_accepted_options(path: Path) -> None:
    commands = ours(vector_exec_commands(load_vector(path)))
    assert commands, f"{path.name} runs none of our commands"
    for argv in commands:
        check_argv(argv)


@pytest.mark.parametrize("path", FLUENT_BIT_CONFIGS, ids=lambda p: p.name)
def test_fluent_bit_command_lines_use_only_accepted_options(path: Path) -> None:
    scripts = fluent_bit_exec_commands(path)
    assert scripts, f"{path.name} has no exec input"
    for script in scripts:
        assert "${" not in script, "Fluent Bit substitutes every ${...} itself, even shell syntax"
        commands = ours(split_shell(script))
        assert commands
        for argv in commands:
            check_argv(argv)


@pytest.mark.parametrize("path", SHELL_RECIPES, ids=lambda p: p.name)
def test_shell_recipe_command_lines_use_only_accepted_options(path: Path) -> None:
    text = path.read_text().replace("\\\n", " ")
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    commands = ours([argv for line in lines for argv in split_shell(line) if argv])
    assert commands, f"{path.name} runs none of our commands"
    for argv in commands:
        check_argv(argv)


# Option names of the components the configs use (Vector 0.58 reference: sources/exec,
# sinks/aws_s3, sinks/file, sinks/http; ../shared/reference/shippers.md section 2). A misspelt
# key would be rejected by Vector at start-up ("unknown field"); with no binary here, this list
# stands in for its config schema.
COMMON_SINK = {"type", "inputs", "encoding", "framing", "buffer", "healthcheck", "acknowledgements"}
KNOWN_OPTIONS = {
    ("source", "exec"): {
        "type",
        "command",
        "mode",
        "scheduled",
        "streaming",
        "working_directory",
        "environment",
        "clear_environment",
        "include_stderr",
        "maximum_buffer_size_bytes",
        "decoding",
        "framing",
    },
    ("sink", "aws_s3"): COMMON_SINK
    | {
        "bucket",
        "region",
        "endpoint",
        "key_prefix",
        "filename_time_format",
        "filename_append_uuid",
        "filename_extension",
        "compression",
        "batch",
        "acl",
        "auth",
        "storage_class",
        "server_side_encryption",
        "ssekms_key_id",
        "tags",
        "content_type",
        "content_encoding",
        "force_path_style",
        "request",
        "tls",
        "timezone",
        "batch_encoding",
    },
    ("sink", "file"): COMMON_SINK | {"path", "compression", "idle_timeout_secs", "timezone"},
    ("sink", "http"): COMMON_SINK | {"uri", "auth", "method", "headers", "compression", "batch", "request", "tls"},
}
NESTED = {
    "scheduled": {"exec_interval_secs"},
    "streaming": {"respawn_on_exit", "respawn_interval_secs"},
    "decoding": {"codec", "json"},
    "framing": {"method", "newline_delimited", "character_delimited"},
    "batch": {"max_bytes", "max_events", "timeout_secs"},
    "buffer": {"type", "max_size", "max_events", "when_full"},
}


def _commented_sinks(path: Path) -> dict:
    """Sinks shipped commented out (`#   type: http` ...): uncomment them to check them too."""
    lines = path.read_text().splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("sinks:")), None)
    if start is None:
        return {}
    body = [
        re.sub(r"^  # ", "  ", line)
        for line in lines[start:]
        if re.match(r"^  #   ", line) or re.match(r"^  # \w+:", line)
    ]
    if not body:
        return {}
    return yaml.safe_load(interpolate_vector("sinks:\n" + "\n".join(body), ENV))["sinks"]


@pytest.mark.parametrize("path", VECTOR_CONFIGS, ids=lambda p: p.name)
def test_vector_configs_use_only_known_option_names(path: Path) -> None:
    config = load_vector(path)
    assert set(config) <= {"schema", "sources", "transforms", "sinks", "data_dir", "api"}
    components = [("source", c) for c in config["sources"].values()]
    components += [("sink", c) for c in {**config["sinks"], **_commented_sinks(path)}.values()]
    for kind, component in components:
        known = KNOWN_OPTIONS[(kind, component["type"])]
        assert set(component) <= known, f"{path.name}: unknown {set(component) - known}"
        for key, value in component.items():
            if key in NESTED and isinstance(value, dict):
                assert set(value) <= NESTED[key], f"{path.name}: {key}: unknown {set(value) - NESTED[key]}"

"""Every command and subcommand: `-h`, examples at the end of `--help` that its own parser accepts,
`--version` as `NAME VERSION`, and click's shell completion."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess

import click
import pytest
from click.testing import CliRunner

from harmony_pipes import __version__
from harmony_pipes._core.help import EXAMPLES_HEADING
from tests.conftest import command_path
from tests.helpers.cmdline import check_line, click_command, console_scripts


def command_paths() -> list[tuple[str, tuple[str, ...]]]:
    """(script, subcommand path) for every command and subcommand the scripts declare."""
    found = []

    def visit(name: str, command: click.Command, path: tuple[str, ...]) -> None:
        found.append((name, path))
        if isinstance(command, click.Group):
            for sub_name, sub in sorted(command.commands.items()):
                visit(name, sub, (*path, sub_name))

    for name in sorted(console_scripts()):
        command = click_command(name)
        assert command is not None
        visit(name, command, ())
    return found


PATHS = command_paths()


def help_text(name: str, path: tuple[str, ...], flag: str) -> str:
    result = CliRunner().invoke(click_command(name), [*path, flag], prog_name=name)
    assert result.exit_code == 0, result.output
    return result.output


def examples_of(text: str) -> list[str]:
    """The example lines: everything after the last `Examples:` heading, which must end the help."""
    _, heading, tail = text.rpartition(EXAMPLES_HEADING + "\n")
    assert heading, f"no {EXAMPLES_HEADING} section:\n{text}"
    lines = tail.rstrip("\n").split("\n")
    assert all(line.startswith("    ") and line.strip() for line in lines), f"examples must end the help:\n{tail}"
    return [line.strip() for line in lines]


def test_every_script_and_subcommand_is_covered():
    assert {name for name, _ in PATHS} == set(console_scripts())
    assert len(PATHS) >= 17  # 5 commands, 12 subcommands (more as they are added)


@pytest.mark.parametrize(("name", "path"), PATHS, ids=[" ".join((n, *p)) for n, p in PATHS])
def test_help_accepts_h_and_ends_with_examples_its_parser_accepts(name, path):
    text = help_text(name, path, "--help")
    assert help_text(name, path, "-h") == text
    examples = examples_of(text)
    assert 2 <= len(examples) <= 3, examples
    reached = False
    for line in examples:
        stages = check_line(line)  # raises click.UsageError / BadParameter when the parser refuses it
        ours = [stage for stage in stages if stage.command == name]
        assert ours, f"{line!r} does not run {name}"
        reached = reached or any(stage.path[: len(path)] == path for stage in ours)
    assert reached, f"no example of `{name} {' '.join(path)}` runs that subcommand: {examples}"


def test_the_example_checker_refuses_a_wrong_option():
    """The check above can fail: an unknown option or a bad value is refused by the parser."""
    with pytest.raises(click.NoSuchOption):
        check_line("harmony-alerts --no-such-option < events.ndjson")
    with pytest.raises(click.BadParameter):
        check_line("harmony-events | harmony-alerts --format xml")
    with pytest.raises(click.UsageError):
        check_line("s3-batch no-such-subcommand")
    (stage,) = check_line("s3-batch status --spool-dir /x")
    assert stage.path == ("status",) and stage.params["spool_dir"] == "/x"


@pytest.mark.parametrize("name", sorted(console_scripts()))
def test_version_prints_name_and_the_package_version(name):
    result = CliRunner().invoke(click_command(name), ["--version"], prog_name=name)
    assert result.exit_code == 0
    assert result.output == f"{name} {__version__}\n"
    assert __version__ == importlib.metadata.version("harmony-pipes")  # one version: the metadata's


def test_version_through_the_console_script():
    proc = subprocess.run([command_path("harmony-events"), "--version"], capture_output=True, timeout=30)
    assert (proc.returncode, proc.stdout) == (0, f"harmony-events {__version__}\n".encode())


@pytest.mark.parametrize("name", sorted(console_scripts()))
def test_shell_completion_prints_a_script(name):
    var = "_" + name.upper().replace("-", "_") + "_COMPLETE"
    func = "_" + name.replace("-", "_") + "_completion"
    env = {**os.environ, var: "bash_source"}
    proc = subprocess.run([command_path(name)], env=env, capture_output=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert f"complete -o nosort -F {func} {name}" in proc.stdout.decode()
    env = {**os.environ, var: "zsh_source"}
    proc = subprocess.run([command_path(name)], env=env, capture_output=True, timeout=30)
    assert proc.returncode == 0 and f"#compdef {name}" in proc.stdout.decode()


def test_completion_completes_subcommands():
    env = {**os.environ, "_S3_BATCH_COMPLETE": "bash_complete", "COMP_WORDS": "s3-batch st", "COMP_CWORD": "1"}
    proc = subprocess.run([command_path("s3-batch")], env=env, capture_output=True, timeout=30)
    assert proc.stdout.decode().split() == ["plain,status"]

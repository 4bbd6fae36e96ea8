"""Helpers for the pipeline tests: read the shipped configs and check their command lines.

`check_argv(["harmony-events", "--once", ...])` parses a command line with the command's own
click parser (the exact code path the console script runs, without invoking it), so an option
the command does not accept, a missing value or a bad choice fails the test with click's message.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import click
import orjson

from tests.helpers.cmdline import click_command as cmdline_click_command

OUR_COMMANDS = ("harmony-events", "harmony-alerts", "s3-batch", "aws-discovery", "hec-emulator", "harmony-pipes")
_SEPARATORS = {"|", "||", "&&", ";", "&", "(", ")"}


def click_command(name: str) -> click.Command:
    """The click command behind a console script (tests.helpers.cmdline finds it)."""
    command = cmdline_click_command(name)
    assert command is not None, f"{name} is not a console script of this checkout"
    return command


def check_argv(argv: list[str]) -> None:
    """Parse argv (argv[0] = one of our commands) exactly as click would; raise on any error.

    `harmony-pipes chain TEXT`: the chain's own options by its parser, then every stage of TEXT
    by the chain's own stage parsing (each stage's command parser, as `harmony-pipes` runs it).
    """
    name, args = Path(argv[0]).name, list(argv[1:])
    if name == "harmony-pipes" and args[:1] == ["chain"]:
        from harmony_pipes.chain import parse_stage, split_stages
        from harmony_pipes.cli import chain_cmd

        try:
            ctx = chain_cmd.make_context("chain", args[1:], resilient_parsing=False)
            stage_lists = split_stages(ctx.params["stages"])
        except click.ClickException as exc:
            raise AssertionError(f"{shlex.join(argv)!r} is rejected by {name}: {exc.format_message()}") from exc
        for position, stage in enumerate(stage_lists, start=1):
            try:
                parse_stage(stage, position)
            except Exception as exc:
                raise AssertionError(f"stage {position} of {shlex.join(argv)!r} is rejected: {exc}") from exc
        return
    command = click_command(name)
    try:
        ctx = command.make_context(name, list(args), resilient_parsing=False)
        while isinstance(command, click.Group):
            rest = (
                [*ctx._protected_args, *ctx.args]
                if hasattr(ctx, "_protected_args")
                else [
                    *ctx.protected_args,
                    *ctx.args,
                ]
            )
            if not rest:
                break
            sub_name, sub, sub_args = command.resolve_command(ctx, rest)
            assert sub is not None, f"{name}: unknown subcommand {sub_name!r}"
            ctx = sub.make_context(sub_name, sub_args, parent=ctx, resilient_parsing=False)
            command = sub
    except click.ClickException as exc:
        raise AssertionError(f"{shlex.join(argv)!r} is rejected by {name}: {exc.format_message()}") from exc


def split_shell(script: str) -> list[list[str]]:
    """Simple commands of a shell script line: split on pipes, ;, &&, || (no subshell parsing)."""
    lexer = shlex.shlex(script, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    commands: list[list[str]] = [[]]
    in_array = False
    for token in lexer:
        if in_array:  # `names=(a b c)`: words of an array assignment, not a command
            in_array = token != ")"
            continue
        if token == "(" and commands[-1] and commands[-1][-1].endswith("="):
            in_array = True
            commands[-1].pop()
            continue
        if token in _SEPARATORS or set(token) <= set("|;&()"):
            commands.append([])
        elif token.startswith(("<", ">")):
            if commands[-1] and commands[-1][-1].isdigit():
                commands[-1].pop()  # the fd number of `2>file`
            commands[-1].append("__redirect__")
        else:
            commands[-1].append(token)
    cleaned = []
    for command in commands:
        argv: list[str] = []
        skip = False
        while command and re.fullmatch(r"[A-Za-z_]\w*=.*", command[0]):
            command = command[1:]  # VAR=value prefix
        for token in command:
            if skip:
                skip = False
                continue
            if token == "__redirect__":
                skip = True  # the redirection target follows
                continue
            argv.append(token)
        if argv:
            cleaned.append(argv)
    return cleaned


def ours(commands: list[list[str]]) -> list[list[str]]:
    """Only the command lines that run one of our five commands."""
    return [argv for argv in commands if Path(argv[0]).name in OUR_COMMANDS]


def vector_exec_commands(config: dict) -> list[list[str]]:
    """Every command line run by the exec sources of a Vector config (through `sh -c` or not)."""
    found: list[list[str]] = []
    for source in (config.get("sources") or {}).values():
        if source.get("type") != "exec":
            continue
        argv = [str(a) for a in source["command"]]
        if Path(argv[0]).name in ("sh", "bash") and len(argv) >= 3 and argv[1] == "-c":
            found.extend(split_shell(argv[2]))
        else:
            found.append(argv)
    return found


def fluent_bit_exec_commands(path: Path) -> list[str]:
    """The `command` of every exec input in a Fluent Bit classic or YAML config."""
    text = path.read_text()
    if path.suffix in (".yaml", ".yml"):
        import yaml

        config = yaml.safe_load(text)
        inputs = (config.get("pipeline") or {}).get("inputs") or []
        return [i["command"] for i in inputs if i.get("name") == "exec"]
    commands = []
    for line in text.splitlines():
        match = re.match(r"^\s*command\s+(.+?)\s*$", line, re.IGNORECASE)
        if match:
            commands.append(match.group(1))
    return commands


def interpolate_vector(text: str, env: dict[str, str]) -> str:
    """Vector's ${VAR} / ${VAR:-default} interpolation, enough for the shipped configs."""

    def repl(match: re.Match[str]) -> str:
        name, _, default = match.group(1).partition(":-")
        return env.get(name, default)

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*(?::-[^}]*)?)\}", repl, text)


def start_hec_emulator(args: list[str], env: dict[str, str] | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """`hec-emulator --port 0 ARGS` on 127.0.0.1; returns (process, base URL) once it is ready.

    Its tenant accepts the test credentials (tests/helpers/events.py CLIENT_ID / ACCESS_KEY),
    passed through the emulator's own env vars, never on argv.
    """
    import os
    import sys

    from tests.helpers.events import ACCESS_KEY, CLIENT_ID

    full_env = {**os.environ, "HEC_EMULATOR_CLIENT_ID": CLIENT_ID, "HEC_EMULATOR_ACCESS_KEY": ACCESS_KEY, **(env or {})}
    binary = str(Path(sys.executable).parent / "hec-emulator")
    proc = subprocess.Popen(
        [binary, "--port", "0", *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=full_env
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.strip():
        proc.kill()
        raise AssertionError(f"hec-emulator exited {proc.wait()} without printing its URL")
    return proc, orjson.loads(line)["url"]

"""Is a command line accepted by our command's own click parser? (help examples, deploy/ files)

`check_line("a | b < file")` splits a shell line into stages; a stage whose program is one of our
console scripts (pyproject's [project.scripts]) is parsed by that command's click parser with
`make_context` — the parser the command runs, option types and callbacks included; nothing is
executed. `harmony-pipes chain [OPTIONS] 'STAGE | STAGE'` is parsed by harmony-pipes when this
checkout has that command, and each of its stages by the stage's own command either way.

Options other branches of issue 13 add (`FUTURE_OPTIONS`) are stripped and reported when this
checkout's parser does not know them yet, so a test can check everything else now and skip only
that check, with a reason.
"""

from __future__ import annotations

import importlib
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import click

REPO_ROOT = Path(__file__).resolve().parents[2]
FUTURE_OPTIONS = ("--metrics-addr", "--metrics-file")
UMBRELLA = "harmony-pipes"
_ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_REDIRECTS = {"<", ">", ">>"}


@cache
def console_scripts() -> dict[str, str]:
    """Console script name -> "module:function", as pyproject.toml declares them."""
    with open(REPO_ROOT / "pyproject.toml", "rb") as handle:
        return dict(tomllib.load(handle)["project"]["scripts"])


def click_command(name: str) -> click.Command | None:
    """The click command behind console script `name`, or None when this checkout has no such script."""
    target = console_scripts().get(name)
    if target is None:
        return None
    module, _, attr = target.partition(":")
    if module == "harmony_pipes._entry":  # the entry point imports the command's module when it runs
        from harmony_pipes._entry import COMMAND_MODULES

        module, attr = COMMAND_MODULES[attr], "main"
    return getattr(importlib.import_module(module), attr).click_command


@dataclass
class Parsed:
    """One program invocation and what our parser made of it."""

    argv: list[str]
    command: str | None = None  # our console script, None for other programs (head, jq ...)
    path: tuple[str, ...] = ()  # subcommands resolved below the command: ("test",)
    params: dict[str, object] = field(default_factory=dict)  # of the innermost (sub)command
    unknown_future: list[str] = field(default_factory=list)  # FUTURE_OPTIONS our parser lacks
    not_checked: str | None = None  # why the parser could not be asked (umbrella missing)
    stages: list[Parsed] = field(default_factory=list)  # a chain's stages

    def walk(self) -> list[Parsed]:
        """This invocation and every stage inside it."""
        return [self, *(inner for stage in self.stages for inner in stage.walk())]


def shell_stages(line: str) -> list[list[str]]:
    """`A=1 cmd -x < in | other > out  # note` -> [["cmd", "-x"], ["other"]] (env and redirections dropped)."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars="|<>&;")
    lexer.whitespace_split = True
    stages: list[list[str]] = [[]]
    tokens = list(lexer)
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token == "|":
            stages.append([])
        elif token in _REDIRECTS:
            i += 1  # skip the file name
        elif token in ("&", "&&", ";", "||"):
            raise ValueError(f"not a simple pipeline: {line!r}")
        elif not stages[-1] and _ENV_ASSIGNMENT.match(token):
            pass  # VAR=value before the program
        else:
            stages[-1].append(token)
        i += 1
    if any(not stage for stage in stages):
        raise ValueError(f"empty stage in {line!r}")
    return stages


def _without(argv: list[str], option: str) -> list[str]:
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == option:
            skip = True
        elif not arg.startswith(option + "="):
            out.append(arg)
    return out


def _contexts(command: click.Command, name: str, args: list[str]) -> list[click.Context]:
    ctx = command.make_context(name, list(args))
    contexts = [ctx]
    while isinstance(command, click.Group):
        rest = [*ctx._protected_args, *ctx.args]
        if not rest:
            break
        sub_name, sub, sub_args = command.resolve_command(ctx, rest)
        assert sub is not None and sub_name is not None
        ctx = sub.make_context(sub_name, sub_args, parent=ctx)
        contexts.append(ctx)
        command = sub
    return contexts


def _parse_with(command: click.Command, argv: list[str], parsed: Parsed) -> None:
    """Parse; a FUTURE_OPTIONS option the parser rejects is noted, stripped, and parsing retried."""
    args = argv[1:]
    while True:
        try:
            contexts = _contexts(command, argv[0], args)
            break
        except click.exceptions.Exit as exc:  # --help / --version: accepted, nothing more to parse
            assert exc.exit_code == 0, argv
            return
        except click.NoSuchOption as exc:
            if exc.option_name not in FUTURE_OPTIONS or exc.option_name in parsed.unknown_future:
                raise
            parsed.unknown_future.append(exc.option_name)
            args = _without(args, exc.option_name)
    parsed.path = tuple(ctx.info_name or "" for ctx in contexts[1:])
    parsed.params = dict(contexts[-1].params)


def _chain_texts(args: list[str]) -> list[str]:
    """The stage lists among a chain's arguments: the ones that start with one of our commands."""
    return [arg for arg in args if arg.split() and arg.split()[0] in console_scripts() and arg.split()[0] != UMBRELLA]


def parse_argv(argv: list[str]) -> Parsed:
    """Parse one invocation (raises click.ClickException when our parser refuses it)."""
    parsed = Parsed(list(argv))
    name = argv[0].rsplit("/", 1)[-1]
    if name != UMBRELLA and name not in console_scripts():
        return parsed  # not ours
    parsed.command = name
    command = click_command(name)
    if command is None:  # the umbrella, before it exists in this checkout
        parsed.not_checked = f"{UMBRELLA} is not a console script in this checkout yet (pyproject [project.scripts])"
        if argv[1:2] == ["chain"]:
            parsed.path = ("chain",)
    else:
        _parse_with(command, [name, *argv[1:]], parsed)
    if name == UMBRELLA and parsed.path[:1] == ("chain",):
        texts = _chain_texts(argv[2:])
        if not texts:
            raise click.UsageError(f"no stages found in {argv!r}")
        for text in texts:
            parsed.stages += [parse_argv(stage) for stage in shell_stages(text)]
    return parsed


def check_line(line: str) -> list[Parsed]:
    """Every stage of a shell line, parsed (raises click.ClickException when a stage is refused)."""
    return [parse_argv(stage) for stage in shell_stages(line)]

"""`harmony-pipes chain 'STAGE | STAGE | …'`: the stages of a shell pipe, run in one process.

The text is what a person would type as a pipe. Each stage is one of our commands with exactly
its own options and environment variables, parsed by that command's own click parser (a wrong
option in any stage is exit 2 before anything is read). The stages become processors handed to
one `Runner`, which passes records in memory and orders the checkpoints: the sink commits, then
each transform saves its state for what the sink committed, then the source saves its cursor.
"""

from __future__ import annotations

import importlib
import os
import shlex
from dataclasses import dataclass
from typing import Any

import click

from harmony_pipes._core.errors import ConfigError, PipesError
from harmony_pipes._core.options import Runtime
from harmony_pipes._core.processor import SINK, SOURCE, TRANSFORM, Processor
from harmony_pipes._core.runner import Runner
from harmony_pipes._core.signals import StopFlag
from harmony_pipes._core.stdio import BadRecords, StdinSource, StdoutSink, emit_to_writer

# command name → its role and the module with `STAGE_COMMAND` (the click command that parses a
# stage) and `build(params, runtime) -> Processor`; imported only when a chain names the command
STAGE_MODULES = {
    "harmony-events": (SOURCE, "harmony_pipes.harmony_events.cli"),
    "harmony-alerts": (TRANSFORM, "harmony_pipes.harmony_alerts.cli"),
    "s3-batch": (SINK, "harmony_pipes.s3_batch.cli"),
    "aws-discovery": (SOURCE, "harmony_pipes.aws_discovery.cli"),
}


@dataclass
class StageSpec:
    """One parsed stage: its command, its argv, and click's parsed parameters."""

    command: str
    argv: list[str]
    params: dict[str, Any]
    context: click.Context


def split_stages(text: str) -> list[list[str]]:
    """`'a -x | b "y z"'` → `[["a", "-x"], ["b", "y z"]]`, quoting as a POSIX shell does."""
    lexer = shlex.shlex(text, posix=True, punctuation_chars="|")
    lexer.whitespace_split = True
    stages: list[list[str]] = [[]]
    try:
        for token in lexer:
            if token == "|":
                stages.append([])
            elif set(token) == {"|"}:
                raise ConfigError(f"'{token}' is not a pipe", "separate stages with a single |")
            else:
                stages[-1].append(token)
    except ValueError as exc:  # no closing quotation
        raise ConfigError(f"cannot read the chain: {exc}", "check the quotes in the chain text") from None
    if any(not argv for argv in stages):
        raise ConfigError("the chain has an empty stage", "write it as 'CMD ... | CMD ... | CMD ...'")
    return stages


def parse_stage(argv: list[str], position: int) -> StageSpec:
    """Parse one stage with its command's own parser (usage errors become ConfigError, exit 2)."""
    command = os.path.basename(argv[0])
    if command not in STAGE_MODULES:
        known = ", ".join(STAGE_MODULES)
        raise ConfigError(f"stage {position}: {argv[0]!r} cannot be a chain stage", f"use one of {known}")
    module = importlib.import_module(STAGE_MODULES[command][1])
    click_command: click.Command = module.STAGE_COMMAND
    try:
        context = click_command.make_context(command, list(argv[1:]), resilient_parsing=False)
    except click.exceptions.Exit as exc:  # --help inside a stage
        raise ConfigError(f"stage {position} ({command}) asks for its help", f"run `{command} --help`") from exc
    except click.ClickException as exc:
        raise ConfigError(f"stage {position} ({command}): {exc.format_message()}", f"see `{command} --help`") from None
    extra = [*getattr(context, "_protected_args", []), *context.args]
    if extra:
        raise ConfigError(
            f"stage {position} ({command}): {' '.join(extra)!r} is not a stage (subcommands run on their own)",
            f"run `{command} {extra[0]}` separately",
        )
    return StageSpec(command, argv, dict(context.params), context)


def check_roles(specs: list[StageSpec]) -> None:
    """A source only first, a sink only last (before anything is built or opened)."""
    for index, spec in enumerate(specs):
        role = STAGE_MODULES[spec.command][0]
        if role == SOURCE and index != 0:
            raise ConfigError(
                f"stage {index + 1} ({spec.command}) is a source: it reads no input", "put it first in the chain"
            )
        if role == SINK and index != len(specs) - 1:
            raise ConfigError(
                f"stage {index + 1} ({spec.command}) is a sink: nothing comes out of it", "put it last in the chain"
            )


def build_stages(specs: list[StageSpec], stop: StopFlag) -> tuple[list[Processor], dict[int, BadRecords]]:
    """Processors for the parsed stages, with stdin in front and stdout behind where needed."""
    check_roles(specs)
    paced = STAGE_MODULES[specs[0].command][0] == SOURCE and STAGE_MODULES[specs[-1].command][0] == SINK
    processors: list[Processor] = []
    for position, spec in enumerate(specs, start=1):
        module = importlib.import_module(STAGE_MODULES[spec.command][1])
        runtime = Runtime.from_options(spec.command, dict(spec.params), stop=stop, register=False)
        runtime.between_source_and_sink = paced and 1 < position < len(specs)
        params = dict(spec.params)
        for key in ("log_format", "log_level", "debug", "stats_interval_secs", "metrics_addr", "metrics_file"):
            params.pop(key, None)
        try:
            with spec.context.scope(cleanup=False):
                processors.append(module.build(params, runtime))
        except click.ClickException as exc:
            raise ConfigError(f"stage {position} ({spec.command}): {exc.format_message()}") from None
        except PipesError as exc:
            raise type(exc)(f"stage {position} ({spec.command}): {exc.message}", exc.fix, exc.exit_code) from None
    bad_records = {id(p): BadRecords(p.runtime, p.stream) for p in processors if p.stream is not None}
    first, last = processors[0], processors[-1]
    stages = list(processors)
    if first.role != SOURCE:
        assert first.stream is not None
        stages.insert(0, StdinSource(first.runtime, first.stream))
    if last.role == SINK:
        last.emit = emit_to_writer(last.runtime.writer)  # its receipts
    else:
        idle_ms = last.stream.flush_idle_ms if last.stream is not None else 200
        stages.append(StdoutSink(last.runtime, last.runtime.writer, idle_ms / 1000.0))
    return stages, bad_records


def run_chain(text: str, runtime: Runtime) -> tuple[Runner, int]:
    """Parse, build and run a chain; returns the runner (failures, stages) and the exit code."""
    specs = [parse_stage(argv, n) for n, argv in enumerate(split_stages(text), start=1)]
    stages, bad_records = build_stages(specs, runtime.stop)
    processors = [s for s in stages if not isinstance(s, StdinSource | StdoutSink)]

    def combined() -> None:
        runtime.stats.extra["stages"] = [
            {"stage": n, **p.runtime.stats.snapshot()} for n, p in enumerate(processors, start=1)
        ]
        counters = runtime.stats.counters
        counters["records_in"] = processors[0].runtime.stats.counters.get("records_in", 0)
        counters["records_out"] = processors[-1].runtime.stats.counters.get("records_out", 0)
        counters["bad_records"] = sum(p.runtime.stats.counters.get("bad_records", 0) for p in processors)

    runtime.stats.before_snapshot = combined
    if runtime.metrics is not None:  # the chain's --metrics-addr / --metrics-file cover every stage
        runtime.metrics.attach([p.runtime for p in processors])
    runner = Runner(stages, runtime.stop, bad_records)
    code = runner.run()
    return runner, code

"""`hec-emulator`: a local double of the HEC Smart API for tests, benchmarks and the demo.

Prints one line `{"url": "http://127.0.0.1:PORT"}` on stdout once it listens, then serves until
SIGTERM/SIGINT (exit 0, a `{"stats": ...}` line on stderr). Every option has an env var.
"""

from __future__ import annotations

from typing import Any

import click

from harmony_pipes._core.cli import command_main
from harmony_pipes._core.help import CONTEXT_SETTINGS, with_examples
from harmony_pipes._core.version import version_option

from .config import COMMAND, options
from .run import serve


@click.command(
    context_settings={**CONTEXT_SETTINGS, "max_content_width": 110},
    epilog=with_examples(
        'hec-emulator --generate 1000 --seed 7  # prints {"url": ...} once it listens',
        "hec-emulator --port 8080 --events events.ndjson --rate-limit-every 10 --token-ttl-secs 60",
        "hec-emulator --generate 50000 --page-size 500 --max-records-per-query 10000 --log-requests",
    ),
)
@options
@version_option(COMMAND)
def cmd(**opts: Any) -> int:
    """Serve a local emulation of the Harmony Email & Collaboration (HEC) Smart API on 127.0.0.1."""
    return serve(opts)


main = command_main(cmd, COMMAND)

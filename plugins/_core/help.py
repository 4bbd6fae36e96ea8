"""What every command's `--help` shares: `-h` as well as `--help`, and examples at the end.

Examples are real command lines (tests/unit/test_cli_help.py parses each one with the command's
own click parser), so they cannot drift from the options.
"""

from __future__ import annotations

from typing import Any

HELP_OPTION_NAMES = ["-h", "--help"]
CONTEXT_SETTINGS: dict[str, Any] = {"help_option_names": HELP_OPTION_NAMES}
EXAMPLES_HEADING = "Examples:"


def with_examples(*examples: str, text: str = "") -> str:
    """An epilog: `text` (wrapped by click as usual), then the examples, one line each, verbatim.

    An example may end in a `# comment`; a stage may be piped into another (`a | b`).
    """
    block = "\b\n" + EXAMPLES_HEADING + "\n" + "\n".join(f"  {line}" for line in examples)
    return f"{text}\n\n{block}" if text else block

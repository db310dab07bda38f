"""The `backdoorguard` command: parse, call the Python API, print.

Exit status: 0 success, 2 bad input (one line on stderr, no traceback); `scan`
(and `audit`) exit 1 when they find something. `--json` prints exactly one JSON object on
stdout and nothing else.
"""

from __future__ import annotations

import sys

import typer

from ..errors import BadInput

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode="markdown",
                  help="Find and remove backdoors in deep models.")


# Each module below adds its commands to `app`.
from . import audit, basic, bench, preview, purify, scan  # noqa: E402,F401

# ---------------------------------------------------------------- entry point

def _click_exception_type():
    try:
        from typer._click.exceptions import ClickException
    except ImportError:  # typer releases before the vendored click
        from click.exceptions import ClickException
    return ClickException


def main(argv: list[str] | None = None) -> int:
    """Run the command line; bad input is one line on stderr and exit status 2."""
    click_exception = _click_exception_type()
    if argv is None:
        argv = sys.argv[1:]
    if not argv:
        argv = ["--help"]
    try:
        result = app(args=argv, prog_name="backdoorguard", standalone_mode=False)
    except BadInput as error:
        sys.stderr.write(f"error: {error}\n")
        return 2
    except click_exception as error:
        sys.stderr.write(f"error: {error.format_message()}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())

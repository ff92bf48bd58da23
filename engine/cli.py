"""Command-line plumbing shared by every stage script.

``run_main(main)`` sets up logging and turns a :class:`UserError` into one line on
stderr and exit code 2 (no traceback); Ctrl-C exits with 130.
"""
from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from core.errors import UserError


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(levelname).1s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def run_main(main: Callable[[], object]) -> None:
    """Run a script's ``main``; user errors end with one line and exit code 2."""
    setup_logging()
    try:
        main()
    except UserError as exc:
        sys.stderr.write(f"error: {exc}\n")
        sys.exit(2)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(130)

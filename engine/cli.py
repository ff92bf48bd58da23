"""Command-line plumbing shared by every stage script.

``run_main(main)`` sets up logging (routed through tqdm, so a log line never lands on a progress
bar) and turns a :class:`UserError` into one line on stderr (``error: ...``, newlines folded) and
exit code 2 (no traceback); Ctrl-C exits with 130.
"""
from __future__ import annotations

import gc
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from tqdm.contrib.logging import logging_redirect_tqdm

from core.errors import UserError


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(levelname).1s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def refuse_existing(paths, overwrite: bool) -> None:
    """UserError naming the first existing output of ``paths`` (None entries skipped) unless ``overwrite``."""
    existing = [Path(p) for p in paths if p is not None and Path(p).exists()]
    if existing and not overwrite:
        raise UserError(f"{existing[0]}: exists; pass --overwrite 1 to replace it")


def run_main(main: Callable[[], object]) -> None:
    """Run a script's ``main``; user errors end with one line and exit code 2."""
    setup_logging()
    try:
        with logging_redirect_tqdm():
            main()
        return
    except UserError as exc:
        message, code = f"error: {' '.join(str(exc).split())}", 2
    except KeyboardInterrupt:
        message, code = "interrupted", 130
    # The traceback is gone here: the generators it kept alive are closed now, and with them their
    # progress bars, so the message starts on a line of its own.
    gc.collect()
    sys.stderr.write(f"{message}\n")
    sys.exit(code)

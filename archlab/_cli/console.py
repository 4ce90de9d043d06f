"""The CLI's two consoles: results on stdout, errors and warnings on stderr.

They live here, not in ``archlab/cli.py``, so the command modules in ``archlab/_cli/`` and the
entry point import them from one place without importing each other.
"""

from __future__ import annotations

from rich.console import Console

__all__ = ["console", "err_console"]

# soft_wrap: long paths and numbers stay on one line (greppable in logs). Both consoles resolve
# sys.stdout / sys.stderr at print time, so redirection (and pytest's capture) applies.
console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)

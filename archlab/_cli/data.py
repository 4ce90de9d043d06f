"""``archlab data download|audit``: get datasets from their official sources; audit a dataset."""

from __future__ import annotations

import typer

data_app = typer.Typer(help="Download datasets and audit them for near-duplicates and leaks.", no_args_is_help=True)

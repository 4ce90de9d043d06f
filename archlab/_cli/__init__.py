"""Command groups of the ``archlab`` CLI that live outside ``archlab/cli.py`` (one file per group).

``archlab/cli.py`` is the entry point and holds the small commands; each larger group is a
``typer.Typer`` defined here and mounted by ``cli.py``: ``data`` (download, audit), ``bench`` and
``export``. Commands raise :class:`archlab.errors.ArchlabError` for user errors; ``cli.main``
turns those into one red line and the exit code.
"""

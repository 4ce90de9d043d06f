"""The commands of the ``archlab`` CLI that live outside ``archlab/cli.py`` (one file each).

``archlab/cli.py`` is the entry point: it holds the small commands (``models``, ``info``,
``analyze``) and mounts these: ``train`` (:mod:`.train`), ``study`` (:mod:`.study`, with the live
display in :mod:`.progress`), ``data`` (download, audit), ``bench`` and ``export``. :mod:`.console`
holds the two consoles every command prints to (so no module here imports ``archlab.cli``), and
:mod:`.schema` generates the run/study templates and the reference docs in ``docs/`` from the
pydantic models. Commands raise :class:`archlab.errors.ArchlabError` for user errors;
``cli.main`` turns those into one red line and the exit code.
"""

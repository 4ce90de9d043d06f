"""Where a study's runs execute: one executor protocol, three backends (SPEC §10, §11).

- :mod:`~archlab.study.backends.base`: the protocol (:class:`~archlab.study.backends.base.Executor`,
  :class:`~archlab.study.backends.base.RunTask`, the ``on_start``/``on_finish`` callbacks).
- :mod:`~archlab.study.backends.inline`: every run in the study process (``--workers 1``).
- :mod:`~archlab.study.backends.local`: local worker processes forked from a preloaded fork
  server; the only module that knows about processes.
- :mod:`~archlab.study.backends.ray`: every run as a Ray task on a cluster
  (``archlab study run FILE --ray ADDRESS``; ``pip install archlab[ray]``).

A backend only executes runs and hands each outcome back to the runner; the runner's process is
the only one that writes the study database. This package imports nothing itself: the CLI imports
:mod:`~archlab.study.backends.local` before torch.
"""

"""Where a study's runs execute besides local worker processes (SPEC §10).

- :mod:`archlab.study.backends.ray`: every run as a Ray task on a cluster
  (``archlab study run FILE --ray ADDRESS``; ``pip install archlab[ray]``).

A backend only executes runs and hands each outcome back to the runner; the runner's process is
the only one that writes the study database.
"""

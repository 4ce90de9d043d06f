"""Imported by the study's fork server only (the last entry of :data:`archlab.study.backends.local.WORKER_PRELOAD`).

The fork server (a fresh interpreter that imported torch and archlab) exits when the study process
does. Python's normal exit would then tear down its ~2,000 modules for ~0.7 s while it still holds
the study's stdout and stderr, so a pipe reading ``archlab study run`` (``| tee``, a benchmark)
would wait that long after the study ended. The server has nothing to clean up: its workers are
their own processes (they exit through ``os._exit`` and never run this), so it leaves at once.
"""

import atexit
import os

atexit.register(os._exit, 0)

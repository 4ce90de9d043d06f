"""``archlab bench [NAME...]``: run the side-by-side benchmarks in ``bench/`` and write their JSON."""

from __future__ import annotations


def bench_cmd() -> None:
    """Run the benchmarks (archlab vs the reference, side by side)."""
    raise NotImplementedError  # the Performance issue builds this command

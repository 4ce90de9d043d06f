"""The vocabulary of statistical results: verdicts, reason codes and notes (no numbers, no words).

:mod:`archlab.study.sequential` and :mod:`archlab.study.stats` return numeric result dataclasses
that carry a :class:`Verdict`, the :class:`Reason` codes that explain it and the :class:`Note`
codes of anomalies found in the run records; :mod:`archlab.study.wording` is the one module that
turns them into sentences. A new statistical condition (an outlying seed, a value outside the
metric's range, ...) is a new member here, a branch where it is detected and one sentence in
:mod:`archlab.study.wording`; tests compare codes and numbers, not prose.
"""

from __future__ import annotations

from enum import Enum

__all__ = ["Verdict", "Reason", "Note", "Interval"]


class _Code(str, Enum):
    """A string-valued code: compares, hashes, prints and formats as its value (``"better"``)."""

    def __str__(self) -> str:
        return str.__str__(self)

    __format__ = str.__format__
    __hash__ = str.__hash__


class Verdict(_Code):
    """Outcome of one comparison (variant vs baseline, one metric, one dataset)."""

    BASELINE = "baseline"  # the baseline's own row: nothing is compared
    BETTER = "better"
    WORSE = "worse"
    EQUIVALENT = "equivalent"
    INCONCLUSIVE = "inconclusive"


class Reason(_Code):
    """Why a verdict is what it is (several may hold; the first explains an inconclusive one)."""

    NO_PAIRS = "no_pairs"  # no seed finished for both sides
    TOO_FEW_PAIRS = "too_few_pairs"  # fewer complete pairs than the design needs
    NO_NEW_PAIRS = "no_new_pairs"  # a sequential look that added no complete pair
    IDENTICAL_NO_MARGIN = "identical_no_margin"  # identical on every pair, but no equivalence margin
    NO_SPREAD_SIGN_TEST = "no_spread_sign_test"  # the same non-zero difference on every pair: sign test only
    INTERVAL_UNDECIDED = "interval_undecided"  # the interval includes 0 and is not inside ±m
    WAITING_FIRST_LOOK = "waiting_first_look"  # adaptive seeds: the first look is not complete yet
    MAX_SEEDS_REACHED = "max_seeds_reached"  # adaptive seeds: the last planned look did not decide
    CONTINUING = "continuing"  # adaptive seeds: not decided, more seeds follow
    STOPPED = "stopped"  # adaptive seeds: decided at this look
    FAILURES_NOT_SURVIVED = "failures_not_survived"  # better/worse on survivors, not with failures as worst
    NOT_CONFIRMED_BY_IMAGES = "not_confirmed_by_images"  # better/worse the seeds × images test does not confirm


class Note(_Code):
    """An anomaly in the run records of one comparison (reported next to the tables)."""

    MISSING_VALUE = "missing_value"  # a finished run without a finite value of the metric
    BASELINE_ABSENT = "baseline_absent"  # the baseline has no runs on this dataset
    TEST_IMAGES_DIFFER = "test_images_differ"  # per-seed splits: no seeds × images test
    FAILURES = "failures"  # some runs failed (failure rates compared)


class Interval(_Code):
    """Which interval decided a verdict."""

    FIXED = "fixed"  # Student-t at alpha / k (Bonferroni over the primary comparisons)
    SEQUENTIAL = "sequential"  # repeated confidence interval of the group-sequential design
    EXPLORATORY = "exploratory"  # unadjusted, at the report's confidence

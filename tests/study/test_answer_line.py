"""The answer line keeps the table's qualifiers (issue 26 item 3): unsigned size, margin, images, lost seeds."""

from __future__ import annotations

from archlab.study.record import RunRecord
from archlab.study.stats import compare_variants
from archlab.study.wording import answer_line, verdict_text


def _run(variant, seed, acc, *, preds=None, targets=None, status="done"):
    test = {"accuracy": acc, "f1_macro": acc, "loss": 1.0 - acc} if status == "done" else None
    return RunRecord(dataset="digits", variant=variant, seed=seed, status=status, test=test, val=test,
                     params=10, flops=20, train_seconds=1.0, best_epoch=1,
                     test_predictions=preds, test_targets=targets)


def _stats(runs, **kw):
    return {vs.variant: vs for vs in compare_variants(runs, baseline="linear", **kw)}


def test_worse_inside_the_margin_has_a_positive_size_and_the_margin():
    base = [0.9510, 0.9460, 0.9550, 0.9490, 0.9530]
    runs = [_run("linear", s, a) for s, a in enumerate(base)]
    runs += [_run("spinal", s, a - 0.004 + d) for s, (a, d) in enumerate(zip(base, [0, 1e-4, -1e-4, 2e-4, -2e-4]))]
    vs = _stats(runs, margin=0.01)["spinal"]
    assert vs.outcome == "worse" and "inside the ±1 pp margin" in verdict_text(vs)
    assert answer_line(vs) == "spinal: worse than linear by 0.40 pp (n=5), inside the ±1 pp margin"
    # no margin: no margin clause; the size is still unsigned
    assert answer_line(_stats(runs)["spinal"]) == "spinal: worse than linear by 0.40 pp (n=5)"


def test_better_not_confirmed_beyond_the_test_images_and_lost_seeds():
    targets = list(range(10)) * 2
    base_pred = [-1, -1] + targets[2:]  # the baseline misses the same 2 of 20 images on every seed
    runs = []
    for s in range(12):  # enough seeds that "better" survives the lost seed counted as the worst outcome
        runs.append(_run("linear", s, 0.9, preds=base_pred, targets=targets))
        runs.append(_run("spinal", s, 1.0, preds=targets, targets=targets) if s != 11
                    else _run("spinal", s, None, status="failed"))
    vs = _stats(runs, margin=0.01)["spinal"]
    assert vs.outcome == "better" and "not confirmed beyond these 20 test images" in verdict_text(vs)
    assert answer_line(vs) == ("spinal: better than linear by 10.00 pp on 11 of 12 seeds, lost seed 11; "
                               "not confirmed beyond these 20 test images")


def test_equivalent_identical_and_exploratory():
    base = [0.951, 0.946, 0.955, 0.949, 0.953]
    runs = [_run(v, s, a) for v in ("linear", "twin") for s, a in enumerate(base)]
    vs = _stats(runs, margin=0.01)["twin"]
    assert answer_line(vs) == "twin: equivalent to linear within ±1 pp (n=5), identical on every paired seed"
    explo = _stats(runs, margin=0.01, primary=False)["twin"]
    assert answer_line(explo).endswith("[exploratory]")

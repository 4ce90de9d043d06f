"""Per-epoch curves as TensorBoard event files (``RUN_DIR/tensorboard/``), when a run asks for them.

``TrainConfig.tensorboard: true`` (``archlab train --tensorboard``, or ``train: {tensorboard:
true}`` in a study) makes the engine write, after every epoch, the training and validation curves
with :class:`torch.utils.tensorboard.SummaryWriter`, so they show up where users of Lightning and
plain PyTorch watch training (``tensorboard --logdir runs/``). The study database and
``result.json`` stay the source of truth; the event files are a view. Writing them touches no
random stream and no tensor of the run, so the results are the same with and without.

Tags: ``loss/train``, ``loss/val``, ``accuracy/train``, ``accuracy/val``, ``f1_macro/val``,
``dice/val`` (segmentation), ``lr`` and ``time/train_seconds``; the step is the 1-based epoch. A
resumed run purges the events of the epochs it trains again, so curves never double back.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from archlab.errors import ConfigError

__all__ = ["TENSORBOARD_DIR", "TensorBoardLogger", "epoch_scalars"]

TENSORBOARD_DIR = "tensorboard"


def epoch_scalars(row: dict[str, Any]) -> dict[str, float]:
    """TensorBoard tag -> value of one epoch's history row (the engine's ``history`` entry)."""
    out: dict[str, float] = {}
    for key, value in row.items():
        if key == "epoch" or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if key.startswith(("train_", "val_")):
            split, metric = key.split("_", 1)
            tag = f"{metric}/{split}"
        elif key == "seconds":
            tag = "time/train_seconds"
        else:
            tag = key
        if math.isfinite(float(value)):
            out[tag] = float(value)
    return out


class TensorBoardLogger:
    """Writes one run's per-epoch curves to ``run_dir/tensorboard``.

    Args:
        run_dir: the run folder.
        start_epoch: epochs already done (a resumed run): events from epoch ``start_epoch + 1``
            on, left by the interrupted attempt, are purged.

    Raises:
        ConfigError: the ``tensorboard`` package is not installed.
    """

    def __init__(self, run_dir: str | Path, *, start_epoch: int = 0):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError(
                "tensorboard: true needs the tensorboard package: .venv/bin/pip install -e '.[tensorboard]' "
                "(or pip install tensorboard)"
            ) from None
        self.log_dir = Path(run_dir) / TENSORBOARD_DIR
        self.writer = SummaryWriter(log_dir=str(self.log_dir), purge_step=start_epoch + 1 if start_epoch else None)

    def log_epoch(self, row: dict[str, Any]) -> None:
        """Add one epoch's scalars (step = its 1-based epoch) and flush them to disk."""
        epoch = int(row["epoch"])
        for tag, value in epoch_scalars(row).items():
            self.writer.add_scalar(tag, value, global_step=epoch)
        self.writer.flush()  # visible in TensorBoard while the run goes on

    def close(self) -> None:
        self.writer.close()


def open_tensorboard(config: Any, out: Path | None, *, start_epoch: int, main: bool) -> TensorBoardLogger | None:
    """The run's logger when ``config.tensorboard`` is on and this process writes the run folder."""
    if not getattr(config, "tensorboard", False) or out is None or not main:
        return None
    return TensorBoardLogger(out, start_epoch=start_epoch)

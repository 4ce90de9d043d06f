"""The resolved configuration of one training run (frozen pydantic models).

Every default carries its reason. A config round-trips through ``model_dump()`` /
``TrainConfig.model_validate`` and is stored next to every checkpoint and result.
"""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_serializer, model_validator

__all__ = ["CleanConfig", "DataConfig", "ModelConfig", "OptimConfig", "SchedulerConfig", "TrainConfig"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _audit_threshold() -> float:
    from archlab.analysis.audit import DEFAULT_THRESHOLD  # lazy: the config schema loads without torch (CLI start)

    return float(DEFAULT_THRESHOLD)


class CleanConfig(_Strict):
    """Cleaning of the *training* split only (archlab.data.cleaning); val and test stay identical."""

    threshold: float = Field(default_factory=_audit_threshold, gt=0, lt=2)  # the audit's cosine-distance cut
    drop: list[Literal["duplicates", "contradicting"]] = Field(
        default_factory=lambda: ["duplicates", "contradicting"], min_length=1)
    file: str | None = None  # a clean_split.json: its keep.train positions instead of a new search


class DataConfig(_Strict):
    """Which data, how it is split, augmented and normalized."""

    name: str = "digits"  # the embedded dataset: runs anywhere with no download
    root: str | None = None  # folder holding the dataset files (None: ~/.cache/archlab/data)
    options: dict[str, Any] = Field(default_factory=dict)  # loader options, e.g. image_size: 28
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0)  # carved from train; selection reads val only
    test_fraction: float = Field(0.2, ge=0.0, lt=1.0)  # used only when the dataset has no test part
    split_seed: int = 0  # the split is part of the study: fixed, independent of the run seed
    resample_seed: int | None = None  # redraw train/val (test kept) with this seed: a study's split: per_seed
    balance: bool = False  # sub-sample train classes to the smallest one (seed 000)
    augment: str = "none"  # batched preset: none | cifar | spinal_mnist | medical
    crop_size: int | None = Field(None, ge=1)  # medical: random crop in training, centre crop in eval
    normalize: Literal["dataset", "none"] | tuple[list[float], list[float]] = "dataset"  # train mean/std
    clean_split: str | None = None  # clean_split.json of `archlab data audit`: drops duplicates/leaks
    clean: CleanConfig | None = None  # clean the training split only (a study variant's `data:` override)
    # resize every split *after* splitting (a study's `vary: [resolution]` variant): same images and split
    resize: int | tuple[int, int] | None = None
    label: str | None = Field(None, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.+-]*$")  # a study's name for it (default: name + image_size)

    @field_validator("options")
    @classmethod
    def _options_are_loader_options(cls, options: dict[str, Any]) -> dict[str, Any]:
        # `name` and `root` are this config's own keys; as loader options they would clash with them
        for key in ("name", "root"):
            if key in options:
                raise ValueError(f"{key!r} is not a loader option: write it as data.{key}, next to data.options")
        return options

    @field_validator("resize")
    @classmethod
    def _resize(cls, v: int | tuple[int, int] | None) -> int | tuple[int, int] | None:
        sizes = [v] if isinstance(v, int) else list(v or ())
        if any(isinstance(s, bool) or s < 1 for s in sizes):
            raise ValueError(f"resize={v!r} must be a positive int or [height, width]")
        return v


class ModelConfig(_Strict):
    """Which model: a registered backbone name, its head and their options."""

    name: str = "mnist_cnn"
    head: str | None = None  # None: the family's default head
    head_kwargs: dict[str, Any] = Field(default_factory=dict)
    kwargs: dict[str, Any] = Field(default_factory=dict)  # model-family options
    # Transfer learning (archlab.train.transfer): backbone weights loaded strictly, head new.
    pretrained: str | None = None  # weights file (torchvision/timm/archlab layout)
    pretrained_sha256: str | None = None  # filled from the file when validated: a changed file = a changed config
    freeze_backbone: bool = False  # no gradients, eval mode: the backbone stays equal to the file
    backbone_lr_scale: float = Field(1.0, gt=0)  # backbone lr = optim.lr x this (two parameter groups)

    @model_validator(mode="after")
    def _hash_pretrained(self) -> ModelConfig:
        # a missing file is reported when the model is built (a study's preflight, before any run)
        if self.pretrained is not None and self.pretrained_sha256 is None and os.path.isfile(
                os.path.expanduser(self.pretrained)):
            from archlab.train.transfer import file_sha256  # lazy: the config schema loads without torch (CLI start)

            object.__setattr__(self, "pretrained_sha256", file_sha256(self.pretrained))
        return self


class OptimConfig(_Strict):
    """Optimizer and its hyper-parameters."""

    name: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = Field(1e-3, gt=0)  # Adam's usual default; the seeds use 1e-3..5e-3
    weight_decay: float = Field(0.0, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)  # sgd only
    nesterov: bool = False  # sgd only


class SchedulerConfig(_Strict):
    """Learning-rate schedule (see :func:`archlab.train.optim.build_scheduler`)."""

    name: Literal["none", "cosine_restarts", "plateau", "step", "onecycle"] = "none"
    kwargs: dict[str, Any] = Field(default_factory=dict)  # e.g. period: 10 (seed 000)


class TrainConfig(_Strict):
    """Everything that determines one run. Same config + same seed => same metrics on CPU."""

    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    loss: str = "ce"  # ce | mse | bce_dice
    loss_kwargs: dict[str, Any] = Field(default_factory=dict)
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(64, ge=1)  # the thesis' and SpinalNet's MNIST batch size
    eval_batch_size: int = Field(512, ge=1)  # evaluation only: does not change results
    seed: int = Field(0, ge=0, le=2**63 - 1)  # model init, batch order, augmentation draws and dropout all derive from it
    monitor: str = "accuracy"  # validation metric for best-epoch selection (accuracy|f1_macro|dice|loss)
    early_stopping_patience: int | None = Field(None, ge=1)  # epochs without val improvement
    min_delta: float = Field(0.0, ge=0)  # improvement smaller than this does not count
    grad_clip: float | None = Field(None, gt=0)  # max global grad norm (NCP paper: 10)
    drop_last: bool = False  # keep every training sample each epoch
    checkpoint_every_steps: int | None = Field(None, ge=1)  # extra mid-epoch checkpoints
    device: str = "auto"  # auto = cuda when present, else cpu
    # Speed options: "auto" is replaced by a fixed, measured rule before a run starts
    # (archlab.train.speed.resolve_speed_options), so stored configs always say true/false.
    amp: Literal["auto"] | bool = "auto"  # mixed precision; auto: bf16 (else fp16) on CUDA, off on CPU
    compile: Literal["auto"] | bool = "auto"  # torch.compile; auto: off (never paid back within a measured run)
    channels_last: Literal["auto"] | bool = "auto"  # memory format; auto: on for conv nets (1.1-1.4x on CPU)
    fused_optimizer: Literal["auto"] | bool = "auto"  # the optimizer's fused kernel; auto: on for cpu/cuda (Adam 3x faster step on CPU)
    threads: int | None = Field(None, ge=1, le=1024)  # torch intra-op threads (None: leave as is; a study sets 1)
    tensorboard: bool = False  # also write RUN_DIR/tensorboard/ event files (per-epoch curves); results unchanged
    # User code the run imports first ({module, path, sha256}: archlab.plugins), from its file's
    # `imports:`; part of the config so an edited plugin is a changed config. Stored only when set.
    plugins: list[dict[str, str]] = Field(default_factory=list)

    # epochs at which the test split is also evaluated, each time with the best-validation weights up
    # to that epoch (budget curves, archlab.study.budgets); recorded in the config only when set
    budgets: list[int] = Field(default_factory=list)

    @field_validator("budgets")
    @classmethod
    def _budgets(cls, v: list[int]) -> list[int]:
        if any(isinstance(b, bool) or b < 1 for b in v) or sorted(set(v)) != list(v):
            raise ValueError(f"budgets must be increasing positive epoch counts, e.g. [10, 50, 200]; got {v}")
        return v

    @model_validator(mode="after")
    def _budgets_within_epochs(self) -> TrainConfig:
        if self.budgets and self.budgets[-1] > self.epochs:
            raise ValueError(f"budget {self.budgets[-1]} is beyond epochs ({self.epochs}); declare budgets <= epochs")
        return self

    @model_serializer(mode="wrap")
    def _without_empty_lists(self, handler: Any) -> dict[str, Any]:
        # a run without budgets or plugins stores exactly the config it stored before they existed
        out = handler(self)
        if isinstance(out, dict):
            for key in ("budgets", "plugins"):
                if not out.get(key):
                    out.pop(key, None)
        return out

    @field_validator("monitor")
    @classmethod
    def _known_monitor(cls, v: str) -> str:
        allowed = ("accuracy", "f1_macro", "dice", "loss")
        if v not in allowed:
            raise ValueError(f"monitor must be one of {allowed}")
        return v

"""Templates and reference docs of the two YAML files, generated from their pydantic models.

- :func:`run_template`: a commented run file (``archlab train --print-config``), every key of
  :class:`archlab.train.config.TrainConfig` with its default and the one-line reason written next
  to the field in the source.
- :func:`study_template`: a commented study file (``archlab study new NAME``) that validates and
  runs as written (digits, two heads, three seeds).
- :func:`render_docs`: ``docs/run-config.md`` and ``docs/study-config.md`` (key, type, default,
  meaning). ``python -m archlab._cli.schema docs`` rewrites them; a test checks that the committed
  files equal the generated ones, so the docs cannot drift from the models.

The comments are read from the source of the models (the ``# ...`` after each field), falling back
to a field's ``description``; nothing is typed twice.
"""

from __future__ import annotations

import ast
import inspect
import io
import sys
import tokenize
import types
import typing
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

__all__ = ["FieldDoc", "model_fields", "run_template", "study_template", "render_docs", "write_docs"]

COMMENT_COLUMN = 36  # where the `# reason` comments start in the templates


@dataclass(frozen=True)
class FieldDoc:
    """One field of a config model as the docs and templates show it."""

    name: str
    type: str  # the annotation as written in the source, e.g. "int | None"
    default: Any  # the default value; REQUIRED when the key must be given
    comment: str  # the reason comment from the source (or the field's description)
    model: type[BaseModel] | None  # the nested model of a section (data, model, optim, ...)


REQUIRED = object()

# What a field means when its source line carries no comment (the one place it is written).
_MEANING = {
    "Study": {
        "name": "the study's name (letters, digits, _ . + -); its default folder is runs/NAME",
        "description": "what the study asks; shown at the top of the report",
        "variants": "name -> overrides of `model:`/`train:` (see below); every variant runs on every seed",
        "baseline": "the variant every other one is compared with",
    },
    "Variant": {
        "model": "keys deep-merged into the study's `model:` (e.g. head, head_kwargs)",
        "train": "keys deep-merged into the study's `train:` (then the study varies that option)",
        "description": "what the variant is; shown in the report",
    },
    "TuneConfig": {
        "space": "dotted key -> \"loguniform(a, b)\" | \"uniform(a, b)\" | \"int(a, b)\" | \"logint(a, b)\" | [choices]",
        "trials": "trials per variant (the equal budget)",
        "sampler": "tpe (Optuna's TPE) or random",
        "seeds_per_trial": "seeds per trial; the trial's value is their mean validation score",
    },
    "MatchConfig": {"key": "dotted path of an integer option under model. (e.g. model.head_kwargs.hidden)"},
    "SmokeConfig": {
        "data": "replaces the data (a small synthetic set)",
        "train": "merged into `train:` (e.g. epochs: 1)",
        "seeds": "replaces the seeds",
        "model": "merged into `model:`",
    },
    "ModelConfig": {
        "name": "registered model (`archlab models` lists them)",
        "head_kwargs": "options of the head, e.g. hidden: [128, 64] for mlp",
    },
    "OptimConfig": {"name": "adam, adamw or sgd", "weight_decay": "L2 penalty (decoupled for adamw)"},
    "SchedulerConfig": {"name": "learning-rate schedule"},
    "TrainConfig": {"loss_kwargs": "options of the loss", "epochs": "training epochs (fewer after early stopping)"},
}


@lru_cache(maxsize=None)
def _source_notes(cls: type[BaseModel]) -> dict[str, tuple[str, str]]:
    """``{field: (annotation source, trailing comment)}`` read from the class's source file."""
    path = inspect.getsourcefile(cls)
    if path is None:  # pragma: no cover - models always come from files here
        return {}
    text = Path(path).read_text()
    comments: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.string.lstrip("#").strip()
    notes: dict[str, tuple[str, str]] = {}
    lines = text.splitlines()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.ClassDef) and node.name == cls.__name__:
            for stmt in node.body:
                if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                    comment = comments.get(stmt.end_lineno or stmt.lineno) or comments.get(stmt.lineno, "")
                    above = stmt.lineno - 1  # else the comment lines right above the field
                    block: list[str] = []
                    while not comment and above in comments and lines[above - 1].lstrip().startswith("#"):
                        block.insert(0, comments[above])
                        above -= 1
                    comment = comment or " ".join(block)
                    notes[stmt.target.id] = (ast.unparse(stmt.annotation), comment)
    return notes


def _section_model(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model of a field typed ``M`` or ``M | None`` (None for anything else)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        annotation = members[0] if len(members) == 1 else None
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def model_fields(cls: type[BaseModel]) -> list[FieldDoc]:
    """The fields of ``cls`` in declaration order, with type, default and reason."""
    notes = _source_notes(cls)
    out = []
    for name, info in cls.model_fields.items():
        type_src, comment = notes.get(name, (str(info.annotation), ""))
        if info.default_factory is not None:
            default = info.default_factory()
        elif info.default is PydanticUndefined:
            default = REQUIRED
        else:
            default = info.default
        comment = _plain(comment or info.description or _MEANING.get(cls.__name__, {}).get(name, ""))
        out.append(FieldDoc(name, type_src, default, comment, _section_model(info.annotation)))
    return out


def _plain(text: str) -> str:
    """Docstring markup as plain text: ``:func:`x``` -> ``x``, double backticks -> single."""
    import re

    text = re.sub(r":[a-z]+:`~?([^`]+)`", r"\1", text)
    return text.replace("``", "`")


def class_summary(cls: type[BaseModel]) -> str:
    """First line of the model's docstring (plain text)."""
    doc = (inspect.getdoc(cls) or "").strip()
    return _plain(doc.splitlines()[0]) if doc else ""


def yaml_value(value: Any) -> str:
    """``value`` as a one-line YAML flow value (``null``, ``{}``, ``[0.5, 0.5]``, ``'on'``)."""
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    if isinstance(value, tuple):
        value = list(value)
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000, sort_keys=False).strip()
    return text.removesuffix("\n...").removesuffix("...").strip()


def _line(indent: int, text: str, comment: str = "") -> str:
    body = " " * indent + text
    if not comment:
        return body
    return f"{body.ljust(COMMENT_COLUMN - 1)} # {comment}"


def _model_lines(cls: type[BaseModel], indent: int, overrides: dict[str, Any] | None = None,
                 skip: frozenset[str] = frozenset(), commented: frozenset[str] = frozenset()) -> list[str]:
    """YAML lines for every field of ``cls`` (nested sections expanded); ``commented`` keys are
    written as ``# key: default`` (shown, not set)."""
    overrides = overrides or {}
    lines: list[str] = []
    for f in model_fields(cls):
        if f.name in skip:
            continue
        value = overrides.get(f.name, f.default)
        if f.model is not None and value is not None and f.name not in overrides:
            lines.append(_line(indent, f"{f.name}:", class_summary(f.model)))
            lines += _model_lines(f.model, indent + 2)
            continue
        if f.model is not None and isinstance(value, dict):
            lines.append(_line(indent, f"{f.name}:", class_summary(f.model)))
            lines += _model_lines(f.model, indent + 2, overrides=value)
            continue
        text = f"{f.name}: {yaml_value(value)}"
        if f.name in commented:
            text = "# " + text
        lines.append(_line(indent, text, f.comment))
    return lines


# The one value of the run template that is not the default: the default model (mnist_cnn) needs
# 28x28 inputs and the default dataset (digits) is 8x8 unless resized, so the template trains as is.
RUN_TEMPLATE_DATA = {"options": {"image_size": 28}}


def run_template() -> str:
    """A commented run file with every key of ``TrainConfig`` (it validates and trains as written).

    Every value is the default except ``data.options`` (:data:`RUN_TEMPLATE_DATA`).
    """
    from archlab.train.config import TrainConfig

    head = [
        "# archlab run file: archlab train --config run.yaml [--set key=value ...]",
        "# Every key is optional; the values below are the defaults (delete what you do not change),",
        "# except data.options: image_size 28, which the default model needs on the default data.",
        "# Run files are flat: epochs, optim, ... sit at the top level. (A study file puts them under",
        "# `train:` -- see `archlab study new NAME`.) Reference: docs/run-config.md",
        "",
    ]
    lines = _model_lines(TrainConfig, 0, overrides={"data": RUN_TEMPLATE_DATA})
    return "\n".join(head + lines) + "\n"


# The study template's example content: small enough to run in about a minute on 2 CPU cores.
_STUDY_EXAMPLE = {
    "description": "Which classification head is best for a small CNN on the embedded digits?",
    "data": {"name": "digits", "options": {"image_size": 28}},
    "model": {"name": "mnist_cnn"},
    "seeds": 3,
    "baseline": "linear",
}
_STUDY_TRAIN_SET = {"epochs": 5, "batch_size": 64, "optim": {"name": "adam", "lr": 0.005}}


def study_template(name: str) -> str:
    """A commented study file named ``name`` that validates and runs as written."""
    from archlab.study.config import SmokeConfig, Study, Variant
    from archlab.train.config import DataConfig, ModelConfig, TrainConfig

    docs = {f.name: f for f in model_fields(Study)}
    out = [
        f"# archlab study file: archlab study run {name}.yaml [--workers auto] [--smoke]",
        "# A study trains every variant x seed x dataset under identical conditions and reports",
        "# whether the differences are real. Reference: docs/study-config.md",
        "",
        _line(0, f"name: {yaml_value(name)}", docs["name"].comment or "the study's name (its default folder: runs/NAME)"),
        _line(0, f"description: {yaml_value(_STUDY_EXAMPLE['description'])}", docs["description"].comment),
        "",
        _line(0, "data:", docs["data"].comment),
    ]
    out += _model_lines(DataConfig, 2, overrides=_STUDY_EXAMPLE["data"])
    out += [
        _line(0, "# datasets:", docs["datasets"].comment),
        "#   - {name: image_folder, root: data/xray_a, options: {image_size: 64}, label: xray_a}",
        "#   - {name: image_folder, root: data/xray_b, options: {image_size: 64}, label: xray_b}",
        "",
        _line(0, "model:", docs["model"].comment),
    ]
    out += _model_lines(ModelConfig, 2, overrides=_STUDY_EXAMPLE["model"])
    out += ["", _line(0, "train:", docs["train"].comment)]
    train_fields = [f for f in model_fields(TrainConfig) if f.name not in ("data", "model", "seed")]
    for f in train_fields:
        if f.name in _STUDY_TRAIN_SET:
            value = _STUDY_TRAIN_SET[f.name]
            if f.model is not None:
                out.append(_line(2, f"{f.name}:", class_summary(f.model)))
                out += _model_lines(f.model, 4, overrides=value)
            else:
                out.append(_line(2, f"{f.name}: {yaml_value(value)}", f.comment))
        else:
            out.append(_line(2, f"# {f.name}: {yaml_value(f.default)}", f.comment))
    out += [
        "",
        _line(0, f"seeds: {yaml_value(_STUDY_EXAMPLE['seeds'])}", docs["seeds"].comment or "a count (0..n-1) or a list"),
        _line(0, f"baseline: {_STUDY_EXAMPLE['baseline']}", docs["baseline"].comment or "the variant the others are compared with"),
        _line(0, "variants:", docs["variants"].comment or class_summary(Variant)),
        "  linear:",
        _line(4, "model: {head: linear}", "merged into `model:` above"),
        _line(4, "description: flatten -> Linear"),
        "  mlp:",
        _line(4, "model: {head: mlp, head_kwargs: {hidden: [128, 64]}}"),
        _line(4, "description: two hidden layers"),
        "  # low_lr:",
        _line(2, "#   train: {optim: {lr: 0.001}}", "a variant may also change a training option"),
        "",
        _line(0, "smoke:", docs["smoke"].comment or class_summary(SmokeConfig)),
        "  data: {name: synthetic, options: {num_classes: 3, num_samples: 150, image_size: 28, channels: 1}}",
        "  train: {epochs: 1}",
        "  seeds: [0, 1]",
    ]
    return "\n".join(out) + "\n"


# ----------------------------------------------------------------------------------------------
# reference docs


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def _table(cls: type[BaseModel], prefix: str, skip: frozenset[str] = frozenset()) -> list[str]:
    rows = ["| key | type | default | what it is |", "|---|---|---|---|"]
    for f in model_fields(cls):
        if f.name in skip:
            continue
        default = "*(required)*" if f.default is REQUIRED else f"`{yaml_value(f.default)}`"
        if f.model is not None and f.default is not None and f.default is not REQUIRED:
            default = f"see `{prefix}{f.name}`"
        what = f.comment or (class_summary(f.model) if f.model is not None else "")
        rows.append(f"| `{prefix}{f.name}` | `{_md_escape(f.type)}` | {_md_escape(default)} | {_md_escape(what)} |")
    return rows


_GENERATED = "<!-- generated by `python -m archlab._cli.schema docs` from the pydantic models: do not edit -->"


def run_config_doc() -> str:
    """``docs/run-config.md``."""
    from archlab.train.config import TrainConfig

    out = [
        "# The run file (`archlab train --config FILE`)",
        "",
        _GENERATED,
        "",
        "A run file is one `archlab.train.config.TrainConfig`: flat, every key optional (the default",
        "is used). `archlab train --print-config > run.yaml` writes the commented template below;",
        "`--set key.sub=value` overrides any key from the command line. A study file uses the same",
        "keys under `train:` (and `data:`, `model:` at its top level): see [study-config.md](study-config.md).",
        "",
        "## Top level",
        "",
        f"{class_summary(TrainConfig)}",
        "",
        *_table(TrainConfig, ""),
    ]
    for f in model_fields(TrainConfig):
        if f.model is not None:
            out += ["", f"## `{f.name}`", "", class_summary(f.model), "", *_table(f.model, f"{f.name}.")]
    out += ["", "## Template", "", "```yaml", run_template().rstrip("\n"), "```", ""]
    return "\n".join(out)


def study_config_doc() -> str:
    """``docs/study-config.md``."""
    from archlab.study.config import SmokeConfig, Study, Variant
    from archlab.study.matching import MatchConfig
    from archlab.study.tuning import TuneConfig

    out = [
        "# The study file (`archlab study run FILE`)",
        "",
        _GENERATED,
        "",
        "A study file is one `archlab.study.config.Study`. `archlab study new NAME` writes the",
        "commented template below (it runs as written). `data:`/`datasets:` entries and `model:` take",
        "the keys of the run file's `data` and `model` sections, and `train:` every other run-file key",
        "except `seed` (see [run-config.md](run-config.md)); each run of the grid is the base merged with",
        "its variant's overrides.",
        "",
        "## Top level",
        "",
        class_summary(Study),
        "",
        *_table(Study, ""),
        "",
        "## A variant (`variants.NAME`)",
        "",
        class_summary(Variant),
        "",
        *_table(Variant, "variants.NAME."),
        "",
        "## `smoke`",
        "",
        class_summary(SmokeConfig),
        "",
        *_table(SmokeConfig, "smoke."),
        "",
        "## `tune` (study level or `variants.NAME.tune`)",
        "",
        class_summary(TuneConfig),
        "",
        *_table(TuneConfig, "tune."),
        "",
        "## `variants.NAME.match`",
        "",
        class_summary(MatchConfig),
        "",
        *_table(MatchConfig, "variants.NAME.match."),
        "",
        "## Template",
        "",
        "```yaml",
        study_template("my_study").rstrip("\n"),
        "```",
        "",
    ]
    return "\n".join(out)


def _signature_rows(fn: Any, skip: tuple[str, ...]) -> list[str]:
    """``| option | allowed | default |`` rows of ``fn``'s keyword parameters (its type hints)."""
    from archlab._registry import describe_type  # with the registries: loaded for the docs only

    target = fn.__init__ if inspect.isclass(fn) else fn
    try:
        hints = typing.get_type_hints(target)
    except Exception:  # a hint naming a TYPE_CHECKING-only class
        hints = {}
    rows = []
    for name, p in inspect.signature(target).parameters.items():
        if name in skip or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        allowed = describe_type(hints[name]) if name in hints else "any"
        default = "required" if p.default is inspect.Parameter.empty else f"`{p.default!r}`"
        rows.append(f"| `{name}` | {allowed.replace('|', '/')} | {default} |")
    return rows


def _builtin(fn: object) -> bool:
    """Whether a registered builder is archlab's own (the docs list built-ins, not a user's plugins)."""
    return getattr(fn, "__module__", "").startswith("archlab.")


def options_doc() -> str:
    """``docs/options.md``: every registered model's, head's and dataset's options, from their signatures."""
    from archlab._registry import head_entrypoint, list_heads, list_models, model_entrypoint
    from archlab.data.datasets import dataset_loader, list_datasets
    from archlab.data.load_options import LOAD_OPTIONS

    out = [
        "# Model, head and dataset options",
        "",
        "<!-- generated by `python -m archlab._cli.schema docs` from the registries' signatures: do not edit -->",
        "",
        "`model.kwargs`, `model.head_kwargs` and `data.options` of a run or study file. Every option is",
        "checked against the type below before anything is built (a `bool` option refuses `\"no\"` and",
        "lists; an unknown option names the close matches). Each builder's docstring and module say what",
        "the option does.",
        "",
        "## Models (`model.kwargs`)",
    ]
    common = ("num_classes", "in_chans", "head", "head_kwargs", "input_size")
    for name in filter(lambda n: _builtin(model_entrypoint(n)), list_models()):
        fn = model_entrypoint(name)
        doc = (inspect.getdoc(fn) or "").split("\n")[0]
        out += ["", f"### `{name}`", "", doc, "", "| option | allowed | default |", "|---|---|---|"]
        out += _signature_rows(fn, common) or ["| (none) | | |"]
    out += ["", "## Heads (`model.head`, `model.head_kwargs`)"]
    for name in filter(lambda n: _builtin(head_entrypoint(n)), list_heads()):
        fn = head_entrypoint(name)
        doc = (inspect.getdoc(fn) or "").split("\n")[0]
        rows = _signature_rows(fn, ("self", "in_shape", "num_classes"))
        out += ["", f"### `{name}`", "", doc, ""]
        if rows:
            out += ["| option | allowed | default |", "|---|---|---|", *rows]
        else:
            out += ["Takes every option of the `ncp` head (its preset values are the defaults)."]
    out += [
        "",
        "## Datasets (`data.name`, `data.options`)",
        "",
        "Every dataset also takes the shared options of `archlab.data.load_options` (applied once at",
        "load to the uint8 tensors; a dataset's own option of the same name keeps its meaning):",
        "",
        "| option | default |",
        "|---|---|",
        *[f"| `{k}` | `{v!r}` |" for k, v in LOAD_OPTIONS.items()],
    ]
    for name in filter(lambda n: _builtin(dataset_loader(n)), list_datasets()):
        rows = _signature_rows(dataset_loader(name), ("root",))
        out += ["", f"### `{name}`", "", "| option | allowed | default |", "|---|---|---|", *(rows or ["| (shared options only) | | |"])]
    return "\n".join(out) + "\n"


def render_docs() -> dict[str, str]:
    """``{file name: text}`` of the generated docs."""
    return {"run-config.md": run_config_doc(), "study-config.md": study_config_doc(), "options.md": options_doc()}


def write_docs(folder: str | Path) -> list[Path]:
    """Write :func:`render_docs` into ``folder``; returns the paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in render_docs().items():
        (folder / name).write_text(text)
        paths.append(folder / name)
    return paths


if __name__ == "__main__":
    for p in write_docs(sys.argv[1] if len(sys.argv) > 1 else "docs"):
        print(f"wrote {p}")

"""archlab: fair, fast, statistically honest experiments with CNN architecture components.

The public names below are imported on first use (PEP 562), so ``import archlab`` and the CLI's
start do not load torch; the built-in models and heads register themselves before the first
registry lookup (:func:`archlab._registry.add_loader`).
"""

from __future__ import annotations

import importlib
from typing import Any

from archlab import _registry

__version__ = "0.1.0"

#: public name -> the module that defines it
_PUBLIC = {
    "create_model": "archlab._registry",
    "create_head": "archlab._registry",
    "list_models": "archlab._registry",
    "list_heads": "archlab._registry",
    "register_model": "archlab._registry",
    "register_head": "archlab._registry",
    "profile": "archlab.analysis.profile",
    "load_pretrained": "archlab.pretrained",
    "Study": "archlab.api",
    "load_study": "archlab.api",
    "register_analysis": "archlab.study.analyses",
    "register_metric": "archlab.study.metrics",
    "register_dataset": "archlab.data.datasets",
    "register_loss": "archlab.train.losses",
    "register_augment": "archlab.data.augment",
}

__all__ = [*_PUBLIC, "__version__"]


def _load_builtins() -> None:
    # Importing the families and heads registers them in archlab._registry's tables.
    importlib.import_module("archlab.heads")
    importlib.import_module("archlab.models")


_registry.add_loader(_load_builtins)


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
    else:
        try:  # a subpackage used as an attribute, e.g. archlab.errors after `import archlab`
            value = importlib.import_module(f"archlab.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"archlab.{name}":
                raise  # the subpackage exists but needs something missing: say what
            raise AttributeError(f"module 'archlab' has no attribute {name!r}") from None
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC])

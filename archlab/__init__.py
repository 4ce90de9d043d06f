"""archlab: fair, fast, statistically honest experiments with CNN architecture components."""

from archlab._registry import (
    create_head,
    create_model,
    list_heads,
    list_models,
    register_head,
    register_model,
)
from archlab.analysis.profile import profile
from archlab.pretrained import load_pretrained

__version__ = "0.1.0"

__all__ = [
    "create_model",
    "create_head",
    "list_models",
    "list_heads",
    "register_model",
    "register_head",
    "profile",
    "load_pretrained",
    "__version__",
]

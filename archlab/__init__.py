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

# Importing the families and heads registers them in archlab._registry's tables (which imports
# neither, so there is no cycle); every `archlab.*` import runs this first.
import archlab.heads  # noqa: E402,F401
import archlab.models  # noqa: E402,F401

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

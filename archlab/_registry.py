"""The one registry and factory for models and heads.

Model families register small builder functions with :func:`register_model`; heads register their
classes with :func:`register_head`. :func:`create_model` and :func:`create_head` are the only ways
in. Registration happens at import of :mod:`archlab.models` / :mod:`archlab.heads` (the only
import-time side effect in the package). This module holds the tables only and imports neither
(no import cycle): ``archlab/__init__.py`` hands it a loader (:func:`add_loader`) that imports
them, and every lookup runs the loaders once first. So ``import archlab`` stays light (the CLI
starts in a tenth of a second, without torch) and every lookup still sees every built-in model.
"""

from __future__ import annotations

import collections.abc
import contextlib
import fnmatch
import importlib
import inspect
import types
import typing
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from archlab.errors import ConfigError, UnknownNameError

__all__ = [
    "register_model",
    "create_model",
    "list_models",
    "model_entrypoint",
    "register_head",
    "create_head",
    "build_head",
    "list_heads",
    "head_entrypoint",
    "value_matches",
    "describe_type",
]

if TYPE_CHECKING:
    import torch.nn as nn

_MODELS: dict[str, Callable[..., nn.Module]] = {}
_HEADS: dict[str, Callable[..., nn.Module]] = {}
_LOADERS: list[Callable[[], None]] = []  # import the built-in families and heads (archlab/__init__.py)
_loaded = False


def add_loader(fn: Callable[[], None]) -> None:
    """Run ``fn`` (which imports modules that register models/heads) before the first lookup."""
    global _loaded
    _LOADERS.append(fn)
    _loaded = False


def ensure_loaded() -> None:
    """Import the built-in families and heads now (a plugin registers after them, so clashes show)."""
    _ensure_loaded()


def _ensure_loaded() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True  # set first: the loaders' imports may look up what they registered
    for fn in list(_LOADERS):
        fn()


def register_model(fn: Callable[..., nn.Module] | None = None, *, name: str | None = None):
    """Register a model builder under its function name (or ``name``).

    The builder is called as ``fn(num_classes=..., in_chans=..., head=..., head_kwargs=...,
    input_size=..., **model_kwargs)`` and returns an :class:`archlab.models.Classifier`.
    """

    def deco(f: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _put(_MODELS, "model", name or f.__name__, f)
        return f

    return deco(fn) if fn is not None else deco


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching the shell-style ``pattern`` (case-insensitive), sorted."""
    _ensure_loaded()
    pat = pattern.lower()
    return sorted(n for n in _MODELS if fnmatch.fnmatch(n.lower(), pat))


def model_entrypoint(name: str) -> Callable[..., nn.Module]:
    """The builder registered as ``name``; ``UnknownNameError`` with close matches otherwise."""
    _ensure_loaded()
    if ":" in name:
        return resolve_dotted(name, "model")
    if name not in _MODELS:
        raise UnknownNameError("model", name, _MODELS)
    return _MODELS[name]


def create_model(
    name: str,
    *,
    num_classes: int,
    in_chans: int = 3,
    head: str | None = None,
    head_kwargs: dict[str, Any] | None = None,
    input_size: int | tuple[int, int] | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a registered classifier: backbone ``name`` + classification ``head``.

    Args:
        name: registered model name (see :func:`list_models`).
        num_classes: number of output logits.
        in_chans: channels of the input images.
        head: registered head name (see :func:`list_heads`); ``None`` = the family's default head
            (``linear`` for most families; the seed papers' own heads for ``vgg5``/``mnist_cnn``).
        head_kwargs: options of the head.
        input_size: input height/width used to compute the feature shape the head sees; ``None`` =
            the family's native size (224 for ``crnet``, 32 for ``mini_vgg``, 28 for ``vgg5``...).
        **kwargs: options of the model family.

    Returns:
        An :class:`archlab.models.Classifier` with ``backbone`` and ``head``.
    """
    fn = model_entrypoint(name)
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise ConfigError(f"num_classes must be a positive int, got {num_classes!r}")
    if not isinstance(in_chans, int) or isinstance(in_chans, bool) or in_chans < 1:
        raise ConfigError(f"in_chans must be a positive int, got {in_chans!r}")
    _check_kwargs(fn, kwargs, f"model {name!r}")
    with _wrong_type_is_config_error(f"model {name!r}"):
        model = fn(
            num_classes=num_classes,
            in_chans=in_chans,
            head=head,
            head_kwargs=dict(head_kwargs or {}),
            input_size=input_size,
            **kwargs,
        )
    model.model_name = name
    return model


def register_head(name: str):
    """Register a head class (or builder) as ``name``.

    The head is called as ``cls(in_shape, num_classes, **kwargs)`` where ``in_shape`` is the
    per-sample feature shape: ``(C, H, W)`` for a feature map or ``(F,)`` for flat features.
    """

    def deco(cls: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _put(_HEADS, "head", name, cls)
        return cls

    return deco


def list_heads(pattern: str = "*") -> list[str]:
    """Registered head names matching ``pattern``, sorted."""
    _ensure_loaded()
    return sorted(n for n in _HEADS if fnmatch.fnmatch(n, pattern))


def head_entrypoint(name: str) -> Callable[..., nn.Module]:
    """The head class/builder registered as ``name``."""
    _ensure_loaded()
    if ":" in name:
        return resolve_dotted(name, "head")
    if name not in _HEADS:
        raise UnknownNameError("head", name, _HEADS)
    return _HEADS[name]


def register_in(table: dict[str, Any], kind: str, name: str, obj: Any, origin: Any = None) -> None:
    """Put ``obj`` in a registry ``table`` as ``name``; a second, different ``obj`` is an error.

    The same definition again (its module re-executed: a notebook cell, an edited plugin reloaded)
    replaces the old one.

    ``origin`` is the function or class that defines ``obj`` when ``obj`` is a record around it.

    Raises:
        ConfigError: ``name`` is registered by another definition (named in the message).
    """
    old = table.get(name)
    new_origin = _origin(origin if origin is not None else obj)
    old_origin = _ORIGINS.get((id(table), name), _origin(old))
    if old is not None and old is not obj and old_origin != new_origin:
        raise ConfigError(f"{kind} {name!r} is registered twice: by {old_origin[0]}.{old_origin[1]} and by "
                          f"{new_origin[0]}.{new_origin[1]}; give one of them another name")
    table[name] = obj
    _ORIGINS[(id(table), name)] = new_origin


_ORIGINS: dict[tuple[int, str], tuple[str, str]] = {}  # (table, name) -> (module, qualname) of its definition


_put = register_in


def _origin(obj: Any) -> tuple[str, str]:
    return getattr(obj, "__module__", "?") or "?", getattr(obj, "__qualname__", repr(obj))


def resolve_dotted(ref: str, kind: str) -> Any:
    """The object a ``module:Name`` reference names (the module imported first: a plugin or a package).

    Raises:
        ConfigError: the module cannot be imported, or has no such attribute.
    """
    module, _, attr = ref.partition(":")
    if not module or not attr:
        raise ConfigError(f"{kind} {ref!r}: a dotted path is written module:Name (e.g. my_heads:GatedMLP)")
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(f"{kind} {ref!r}: module {module!r} cannot be imported ({exc}); list its file in the "
                          "study's `imports:` (imports: [my_heads.py]) or install it") from None
    obj = mod
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"{kind} {ref!r}: module {module!r} has no {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ConfigError(f"{kind} {ref!r} is not a class or function")
    return obj


def build_head(name: str, in_shape: tuple[int, ...], num_classes: int, **kwargs: Any) -> nn.Module:
    """Build head ``name`` for per-sample features of shape ``in_shape``."""
    cls = head_entrypoint(name)
    _check_kwargs(cls, kwargs, f"head {name!r}")
    with _wrong_type_is_config_error(f"head {name!r}"):
        head = cls(tuple(int(s) for s in in_shape), num_classes, **kwargs)
    head.head_name = name
    return head


def create_head(name: str, *, in_features: int, num_classes: int, **kwargs: Any) -> nn.Module:
    """Build head ``name`` on flat features of width ``in_features`` (input (B, in_features))."""
    if not isinstance(in_features, int) or in_features < 1:
        raise ConfigError(f"in_features must be a positive int, got {in_features!r}")
    return build_head(name, (in_features,), num_classes, **kwargs)


@contextlib.contextmanager
def _wrong_type_is_config_error(what: str) -> Iterator[None]:
    """An option of the wrong type (``drop_rate: null`` in a study file) fails while building with a
    TypeError deep inside (``0.0 <= None``); report it as the config problem it is, not a traceback."""
    try:
        yield
    except TypeError as exc:
        raise ConfigError(f"{what}: an option has a value of the wrong type ({exc}); check its options' types") from None


def _check_kwargs(fn: Callable[..., Any], kwargs: dict[str, Any], what: str) -> None:
    """Reject unknown keyword options with a close-match suggestion (before building anything)."""
    target = fn.__init__ if inspect.isclass(fn) else fn
    params = inspect.signature(target).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    accepted = [n for n, p in params.items() if n not in ("self",) and p.kind is not p.VAR_POSITIONAL]
    for key in kwargs:
        if key not in accepted:
            err = UnknownNameError(f"option of {what}", key, accepted)
            raise err
    hints = _option_hints(target)
    for key, value in kwargs.items():
        hint = hints.get(key)
        if hint is not None and not value_matches(value, hint):
            raise ConfigError(
                f"{what}: option {key}={value!r} is not valid (type {type(value).__name__}); "
                f"allowed: {describe_type(hint)}"
            )


def _option_hints(target: Callable[..., Any]) -> dict[str, Any]:
    """The evaluated type hints of ``target``'s parameters (``{}`` when they cannot be resolved)."""
    try:
        return typing.get_type_hints(target)
    except Exception:  # a hint naming a TYPE_CHECKING-only class: that builder is checked by its own code
        return {}


_SEQUENCES = (collections.abc.Sequence, list, tuple)


def value_matches(value: Any, hint: Any) -> bool:
    """Whether a config value (as YAML gives it: lists for tuples) fits the type hint ``hint``.

    ``bool`` is not an ``int`` here and a ``str`` is not a sequence of anything, so ``se: "no"`` or
    ``se: [true, false]`` for a ``bool`` option fails (they are truthy: the silent wrong model).
    ``float`` accepts ints; classes and hints this checker does not know accept anything.
    """
    if hint is Any or hint is object:
        return True
    if hint is None or hint is type(None):
        return value is None
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(value_matches(value, a) for a in args)
    if origin is typing.Literal:
        return any(value == a and type(value) is type(a) for a in args)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin in _SEQUENCES or hint in _SEQUENCES:
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            return False
        if not args:
            return True
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            return len(value) == len(args) and all(value_matches(v, a) for v, a in zip(value, args))
        return all(value_matches(v, args[0]) for v in value)
    if origin in (dict, collections.abc.Mapping) or hint in (dict, collections.abc.Mapping):
        if not isinstance(value, dict):
            return False
        return not args or all(value_matches(k, args[0]) and value_matches(v, args[1]) for k, v in value.items())
    return True


def describe_type(hint: Any) -> str:
    """A type hint as a config writer reads it: ``bool or list of bool``, ``'max', 'concat'``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is None or hint is type(None):
        return "null"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe_type(a) for a in args)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in _SEQUENCES:
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            return "a list [" + ", ".join(describe_type(a) for a in args) + "]"
        return f"a list of {describe_type(args[0])}" if args else "a list"
    if origin in (dict, collections.abc.Mapping):
        return "a mapping"
    return getattr(hint, "__name__", str(hint))

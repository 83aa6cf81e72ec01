"""Find a strategy class by built-in name, `module:Class` or `path/to/file.py:Class`."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
from pathlib import Path
from typing import Any

from sapphire.strategy.base import Strategy


def builtin_strategies() -> dict[str, type[Strategy]]:
    """Return the built-in strategies by registry name."""
    from sapphire.strategy import builtins

    classes = [getattr(builtins, name) for name in builtins.__all__]
    return {cls.name: cls for cls in classes}


#: strategies that trade a trained model; they need the `ml` extra, so load on demand
MODEL_STRATEGIES = {"ml": "sapphire.ml.strategy:MLStrategy"}


def model_strategies() -> dict[str, type[Strategy]]:
    """Return the model-driven strategies (`ml`) by registry name."""
    out: dict[str, type[Strategy]] = {}
    for name, spec in MODEL_STRATEGIES.items():
        try:
            obj = _load_module_attr(spec)
        except (ImportError, ValueError):
            continue
        if inspect.isclass(obj) and issubclass(obj, Strategy):
            out[name] = obj
    return out


def _load_module_attr(spec: str) -> object:
    target, _, attr = spec.rpartition(":")
    if target.endswith(".py"):
        path = Path(target).expanduser()
        if not path.is_file():
            raise ValueError(f"strategy file not found: {path}")
        mod_spec = importlib.util.spec_from_file_location(path.stem, path)
        if mod_spec is None or mod_spec.loader is None:
            raise ValueError(f"cannot import strategy file {path}")
        module = importlib.util.module_from_spec(mod_spec)
        mod_spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as exc:
            raise ValueError(f"cannot import strategy module {target!r}: {exc}") from None
    if not hasattr(module, attr):
        raise ValueError(f"{target} has no attribute {attr!r}")
    return getattr(module, attr)


def get_strategy(spec: str | type[Any], kinds: tuple[type, ...] = (Strategy,)) -> type[Any]:
    """Return the strategy class for a class, a built-in name or an import spec.

    `kinds` are the accepted base classes (runners that also take event-driven strategies
    pass `(Strategy, EventStrategy)`)."""
    what = " or ".join(k.__name__ for k in kinds)
    if inspect.isclass(spec):
        if not issubclass(spec, kinds):
            raise TypeError(f"{spec.__name__} is not a sapphire {what} subclass")
        return spec
    if not isinstance(spec, str):
        raise TypeError(f"strategy must be a name or a Strategy class, got {spec!r}")
    found = builtin_strategies()
    if spec in found:
        return found[spec]
    if spec in MODEL_STRATEGIES:
        try:
            return get_strategy(MODEL_STRATEGIES[spec])
        except ValueError as exc:
            raise ValueError(
                f"the {spec!r} strategy needs the ml extra (pip install 'sapphire[ml]'): {exc}"
            ) from None
    if ":" in spec:
        obj = _load_module_attr(spec)
        if not (inspect.isclass(obj) and issubclass(obj, kinds)):
            raise ValueError(f"{spec} is not a sapphire {what} subclass")
        return obj
    raise ValueError(
        f"unknown strategy {spec!r}; built-ins: {', '.join(sorted([*found, *MODEL_STRATEGIES]))} "
        "(or give module:Class / path/to/file.py:Class)"
    )

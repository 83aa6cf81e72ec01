"""The configuration for people: its effective values with their sources (secrets masked),
and its reference in Markdown, generated from the model (docs/operations.md holds it)."""

from __future__ import annotations

import enum
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, SecretStr
from pydantic_core import PydanticUndefined

from sapphire.ops.config import PROFILE_DEFAULTS, PROFILE_NAMES, SapphireConfig
from sapphire.ops.config_sources import MASK, LoadedConfig, env_name, is_secret

__all__ = ["Effective", "effective_values", "render_reference"]


class Effective(typing.NamedTuple):
    """One effective value: its dotted path, the value as text (masked) and its source."""

    path: str
    value: Any
    source: str


def _plain(value: Any) -> Any:
    """`value` as JSON-ready data, secrets masked."""
    if isinstance(value, SecretStr):
        return MASK
    if isinstance(value, BaseModel):
        return {k: _plain(getattr(value, k)) for k in type(value).model_fields}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _walk(value: Any, prefix: str) -> Iterator[tuple[str, Any]]:
    if isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _walk(getattr(value, name), f"{prefix}.{name}" if prefix else name)
    elif isinstance(value, tuple) and value and isinstance(value[0], BaseModel):
        for index, item in enumerate(value):
            yield from _walk(item, f"{prefix}.{index}")
    else:
        yield prefix, value


def effective_values(loaded: LoadedConfig) -> list[Effective]:
    """Every leaf of the configuration with the layer it came from (env and secrets name
    their variable), secrets masked."""
    out = []
    for path, value in _walk(loaded.config, ""):
        if path.startswith("service.") and path[8:] in ("home", "database_url", "redis_url"):
            continue  # the top-level sections' values (shown there)
        source = loaded.source_of(path)
        if source in ("env", "secrets"):
            variable = next((loaded.variables[p] for p in _parents(path) if p in loaded.variables),
                            env_name(path))  # fmt: skip
            source = f"{source} ({variable})"
        shown = MASK if is_secret(path) and value is not None else _plain(value)
        out.append(Effective(path, shown, source))
    return out


def _parents(path: str) -> Iterator[str]:
    parts = path.split(".")
    for end in range(len(parts), 0, -1):
        yield ".".join(parts[:end])


# -- the reference -----------------------------------------------------------------------------


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is Literal:
        return " \\| ".join(str(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        names = [_type_name(a) for a in args if a is not type(None)]
        optional = type(None) in args
        return " \\| ".join(names) + (" (optional)" if optional else "")
    if origin in (tuple, list):
        return f"list of {_type_name(args[0])}" if args else "list"
    if origin is typing.Annotated:
        return _type_name(args[0])
    if annotation is SecretStr:
        return "secret"
    if annotation is Path:
        return "path"
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation)


def _default(field: Any) -> str:
    if field.default_factory is not None:
        value = field.default_factory()
        return "" if isinstance(value, BaseModel) else f"`{_plain(value)!r}`".replace("|", "\\|")
    if field.default is PydanticUndefined:
        return "required"
    if field.default is None:
        return ""
    return f"`{_plain(field.default)!r}`".replace("|", "\\|")


def _rows(model: type[BaseModel], prefix: str) -> Iterator[str]:
    for name, field in model.model_fields.items():
        path = f"{prefix}.{name}" if prefix else name
        if prefix == "service" and name in ("home", "database_url", "redis_url"):
            continue  # set by the top-level sections
        inner = _inner_model(field.annotation)
        if inner is not None:
            many = typing.get_origin(field.annotation) in (tuple, list)
            yield from _rows(inner, f"{path}[]" if many else path)
            continue
        description = (field.description or "").replace("|", "\\|").replace("\n", " ")
        secret = " Secret: environment or secrets file only." if is_secret(path) else ""
        env = f"`{env_name(path)}`"
        if "[]" in path:  # a list's items: only their secrets have variables, by item name
            head, _, field_name = path.partition("[].")
            env = f"`{env_name(head)}__<NAME>__{field_name.upper()}`" if secret else "file only"
        yield (
            f"| `{path}` | {_type_name(field.annotation)} | {_default(field)} | {env} | "
            f"{description}{secret} |"
        )


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None


def render_reference() -> str:
    """The configuration reference in Markdown: every key with its type, default,
    environment variable and description, and what each profile changes."""
    lines = [
        "### Reference",
        "",
        "Generated from `SapphireConfig` (`sapphire.ops.config_report.render_reference`).",
        "Every key is read from the config file, its environment variable (nested with `__`) "
        "and, for the service, its flat variable as well (`SAPPHIRE_PORT`, "
        "`SAPPHIRE_DATABASE_URL`, `SAPPHIRE_REDIS_URL`...).",
    ]
    for section, field in SapphireConfig.model_fields.items():
        inner = _inner_model(field.annotation)
        title = f"`{section}`" if inner is not None else None
        if title is None:
            continue
        lines += ["", f"#### {title}", "", (inner.__doc__ or "").strip().splitlines()[0], ""]
        lines += ["| key | type | default | environment | description |", "|---|---|---|---|---|"]
        lines += list(_rows(inner, section))  # type: ignore[arg-type]
    lines += ["", "#### Top-level keys", ""]
    lines += ["| key | type | default | environment | description |", "|---|---|---|---|---|"]
    for name, field in SapphireConfig.model_fields.items():
        if _inner_model(field.annotation) is None:
            description = field.description or ""
            lines.append(
                f"| `{name}` | {_type_name(field.annotation)} | {_default(field)} | "
                f"`{env_name(name)}` | {description} |"
            )
    lines += ["", "#### Profile defaults", "", "| profile | defaults |", "|---|---|"]
    for name in PROFILE_NAMES:
        flat = ", ".join(f"`{k}: {v}`" for k, v in _flatten(PROFILE_DEFAULTS[name]))
        lines.append(f"| `{name}` | {flat} |")
    return "\n".join(lines) + "\n"


def _flatten(tree: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in tree.items():
        path = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict):
            yield from _flatten(value, path)
        else:
            yield path, value

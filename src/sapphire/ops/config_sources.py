"""Where the configuration's values come from, and `load_config`.

Layers, highest precedence first: `flag` (CLI flags, dotted paths), `env` (`SAPPHIRE_…`
variables), `secrets` (the secrets file's `NAME=value` lines, named like variables),
`file` (the YAML or TOML config file) and `default` (the profile's defaults, then the
model's). The config file is `--config FILE`, else `$SAPPHIRE_CONFIG`, else
`$SAPPHIRE_HOME/sapphire.yaml` when it exists. A secret (a `SecretStr` field, or a
database or Redis URL holding a password) is never read from the config file.

Every problem is reported at once as a `ConfigError`: its dotted path, the bad value
(secrets masked), where it came from and what is allowed.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, SecretStr, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from sapphire.ops.config import PROFILE_DEFAULTS, PROFILE_NAMES, SapphireConfig, has_password
from sapphire.ops.config_service import ServiceSettings

__all__ = [
    "CONFIG_ENV",
    "ENV_PREFIX",
    "LAYERS",
    "MASK",
    "ConfigError",
    "LoadedConfig",
    "Problem",
    "config_path",
    "env_name",
    "is_secret",
    "load_config",
    "model_at",
    "prepared_sources",
    "read_file",
    "read_secrets_file",
]

ENV_PREFIX = "SAPPHIRE_"
CONFIG_ENV = "SAPPHIRE_CONFIG"
LAYERS = ("flag", "env", "secrets", "file", "default")
MASK = "********"
#: the service's flat variables that name a top-level section's field
_FLAT_ELSEWHERE = {"home": ("home",), "database_url": ("database", "url"),
                   "redis_url": ("redis", "url")}  # fmt: skip
_URLS = ("database.url", "redis.url")
_WEBHOOK_SECRET = re.compile(r"^NOTIFICATIONS__WEBHOOKS__([A-Z0-9_]+)__(URL|HMAC_SECRET)$")

#: the merged layers below the flags, prepared by `load_config` for `SapphireConfig`
_PREPARED: ContextVar[dict[str, Any] | None] = ContextVar("sapphire_config", default=None)


@dataclass(frozen=True)
class Problem:
    """One bad value: its dotted path, what is wrong, the value (masked) and its source."""

    path: str
    message: str
    value: str | None = None
    source: str | None = None

    def __str__(self) -> str:
        got = f" (got {self.value}" if self.value is not None else ""
        where = f" from {self.source}" if self.source else ""
        if got:
            got += where + ")"
        elif where:
            got = f" ({where.strip()})"
        return f"{self.path}: {self.message}{got}"


class ConfigError(ValueError):
    """The configuration has bad values: `problems` lists each one."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("bad configuration:\n" + "\n".join(f"  {p}" for p in problems))


@dataclass(frozen=True)
class LoadedConfig:
    """A validated configuration, its file, the layer each leaf value came from and the
    variable of each value read from the environment or the secrets file."""

    config: SapphireConfig
    file: Path | None
    sources: dict[str, str]
    variables: dict[str, str]

    def source_of(self, path: str) -> str:
        """The layer (flag/env/secrets/file/default) that set the dotted `path`."""
        for prefix in _prefixes(path):
            if prefix in self.sources:
                return self.sources[prefix]
        return "default"


def _prefixes(path: str) -> Iterator[str]:
    parts = path.split(".")
    for end in range(len(parts), 0, -1):
        yield ".".join(parts[:end])


# -- the model's shape -----------------------------------------------------------------------


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The model class inside `annotation` (`X`, `X | None`, `tuple[X, ...]`), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def model_at(parts: list[str] | tuple[str, ...]) -> type[BaseModel] | None:
    """The model holding the fields at dotted `parts` (list indexes skipped), if any."""
    model: type[BaseModel] | None = SapphireConfig
    for part in parts:
        if model is None:
            return None
        if part.isdigit():
            continue
        field = model.model_fields.get(part)
        model = _model_of(field.annotation) if field is not None else None
    return model


def is_secret(path: str) -> bool:
    """True if the dotted `path` names a secret field (SecretStr)."""
    parts = path.replace("[]", "").split(".")
    model = model_at(parts[:-1])
    field = model.model_fields.get(parts[-1]) if model is not None else None
    return field is not None and "SecretStr" in repr(field.annotation)


def env_name(path: str) -> str:
    """The environment variable of the dotted `path` (`service.port`: SAPPHIRE_SERVICE__PORT)."""
    return ENV_PREFIX + "__".join(p.upper() for p in path.split(".") if not p.isdigit())


# -- the layers ----------------------------------------------------------------------------


def _set(tree: dict[str, Any], parts: list[str], value: Any) -> None:
    for part in parts[:-1]:
        tree = tree.setdefault(part, {})
        if not isinstance(tree, dict):
            return
    tree[parts[-1]] = value


def _leaf(text: str) -> Any:
    """An environment value: JSON when it is a list or an object, else the string."""
    stripped = text.strip()
    if stripped[:1] in "[{":
        try:
            return json.loads(stripped)
        except json.JSONDecodeError:
            return text
    return text


@dataclass
class _EnvLayer:
    """The `SAPPHIRE_*` variables as a nested mapping, the webhook secrets by hook name, and
    the variable that set each dotted path."""

    data: dict[str, Any]
    hooks: dict[str, dict[str, str]]
    names: dict[str, str]


def _env_layer(environ: Mapping[str, str], problems: list[Problem]) -> _EnvLayer:
    """Read the `SAPPHIRE_*` variables of `environ` (nested ones win over the flat ones)."""
    flat: dict[str, Any] = {}
    nested: dict[str, Any] = {}
    layer = _EnvLayer({}, {}, {})
    sections = set(SapphireConfig.model_fields)
    service_fields = set(ServiceSettings.model_fields)
    for key, value in sorted(environ.items(), key=lambda item: ("__" in item[0], item[0])):
        upper = key.upper()
        if not upper.startswith(ENV_PREFIX) or upper == CONFIG_ENV:
            continue
        rest = upper[len(ENV_PREFIX) :]
        hook = _WEBHOOK_SECRET.match(rest)
        if hook:
            layer.hooks.setdefault(hook.group(1), {})[hook.group(2).lower()] = value
            layer.names[f"notifications.webhooks.{hook.group(1)}"] = upper
            continue
        if "__" in rest:
            parts = [p.lower() for p in rest.split("__")]
            if parts[0] not in sections:
                allowed = ", ".join(sorted(sections))
                problems.append(Problem(upper, f"unknown section {parts[0]!r}; allowed: {allowed}"))
                continue
            _set(nested, parts, _leaf(value))
        elif rest.lower() in sections:
            parts = [rest.lower()]
            _set(nested, parts, _leaf(value))
        elif rest.lower() in service_fields:
            parts = list(_FLAT_ELSEWHERE.get(rest.lower(), ("service", rest.lower())))
            _set(flat, parts, _leaf(value))
        else:
            continue
        layer.names[".".join(parts)] = upper
    layer.data = _merge(flat, nested)
    return layer


def _merge(low: dict[str, Any], high: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(low)
    for key, value in high.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def read_secrets_file(path: Path) -> dict[str, str]:
    """A secrets file's `NAME=value` lines (blank lines and `#` comments skipped)."""
    out: dict[str, str] = {}
    try:
        text = path.expanduser().read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([Problem("secrets_file", f"cannot be read: {exc.strerror}",
                                   repr(str(path)))]) from None  # fmt: skip
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        if not sep or not name.strip():
            raise ConfigError([Problem("secrets_file", f"line {number}: expected NAME=value",
                                       repr(str(path)))])  # fmt: skip
        out[name.strip()] = value.strip().strip('"').strip("'")
    return out


def config_path(explicit: Path | None, environ: Mapping[str, str]) -> Path | None:
    """The config file: `explicit`, else $SAPPHIRE_CONFIG, else $SAPPHIRE_HOME/sapphire.yaml
    when it exists, else None."""
    if explicit is not None:
        return Path(explicit).expanduser()
    if environ.get(CONFIG_ENV):
        return Path(environ[CONFIG_ENV]).expanduser()
    home = environ.get("SAPPHIRE_HOME")
    candidate = (Path(home).expanduser() if home else Path.home() / ".sapphire") / "sapphire.yaml"
    return candidate if candidate.is_file() else None


def read_file(path: Path) -> dict[str, Any]:
    """A YAML (.yaml/.yml) or TOML (.toml) config file as a mapping; a ConfigError naming
    the file and what is wrong."""
    where = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([Problem("(file)", f"{where} cannot be read: {exc.strerror}")]) from None
    if path.suffix.lower() == ".toml":
        try:
            data: Any = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError([Problem("(file)", f"{where} is not valid TOML: {exc}")]) from None
    elif path.suffix.lower() in (".yaml", ".yml"):
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise ConfigError([Problem("(file)", f"{where} is not valid YAML: {exc}")]) from None
    else:
        raise ConfigError([Problem("(file)", f"{where}: expected a .yaml, .yml or .toml file")])
    if not isinstance(data, dict):
        raise ConfigError([Problem("(file)", f"{where} must hold a mapping of sections")])
    return data


def _secrets_in_file(data: Any, parts: tuple[str, ...], problems: list[Problem]) -> None:
    """Refuse every secret written in the config file."""
    if isinstance(data, list):
        for index, item in enumerate(data):
            _secrets_in_file(item, (*parts, str(index)), problems)
        return
    if not isinstance(data, dict):
        return
    for key, value in data.items():
        path = ".".join((*parts, str(key)))
        if is_secret(path) and value is not None:
            message = (
                f"a secret is not read from the config file: set {_secret_env(path, data)} "
                "in the environment or the secrets file"
            )
            problems.append(Problem(path, message, MASK, "file"))
        elif path in _URLS and isinstance(value, str) and has_password(value):
            message = (
                f"a URL with a password is a secret: set {env_name(path)} in the environment "
                f"or the secrets file{' or use database.url_file' if 'database' in path else ''}"
            )
            problems.append(Problem(path, message, _masked_url(value), "file"))
        else:
            _secrets_in_file(value, (*parts, str(key)), problems)


def _secret_env(path: str, entry: Mapping[str, Any]) -> str:
    parts = path.split(".")
    if parts[:2] == ["notifications", "webhooks"]:
        hook = re.sub(r"[^A-Z0-9]", "_", str(entry.get("name", "NAME")).upper())
        return f"{ENV_PREFIX}NOTIFICATIONS__WEBHOOKS__{hook}__{parts[-1].upper()}"
    return env_name(path)


def _masked_url(url: str) -> str:
    return repr(re.sub(r"(://[^:/@]*:)[^@]*@", r"\1" + MASK + "@", url))


def _fill_hooks(data: dict[str, Any], hooks: Mapping[str, Mapping[str, str]]) -> None:
    """The webhook secrets (`SAPPHIRE_NOTIFICATIONS__WEBHOOKS__<NAME>__URL`) into the hooks."""
    section = data.get("notifications")
    webhooks = section.get("webhooks") if isinstance(section, dict) else None
    if not hooks or not isinstance(webhooks, list):
        return
    filled = []
    for hook in webhooks:
        if isinstance(hook, dict):
            name = re.sub(r"[^A-Z0-9]", "_", str(hook.get("name", "")).upper())
            hook = {**hook, **hooks.get(name, {})}
        filled.append(hook)
    data["notifications"] = {**section, "webhooks": filled}  # type: ignore[dict-item]


class _Layer(PydanticBaseSettingsSource):
    """A prepared mapping as a pydantic-settings source."""

    def __init__(self, settings_cls: type[BaseSettings], data: dict[str, Any]) -> None:
        super().__init__(settings_cls)
        self._data = data

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return self._data


def prepared_sources(settings_cls: type[BaseSettings]) -> tuple[PydanticBaseSettingsSource, ...]:
    """The env, secrets, file and default layers `load_config` merged (none outside it)."""
    return (_Layer(settings_cls, _PREPARED.get() or {}),)


def _leaves(tree: Any, prefix: str = "") -> Iterator[str]:
    if isinstance(tree, dict) and tree:
        for key, value in tree.items():
            yield from _leaves(value, f"{prefix}.{key}" if prefix else str(key))
    elif prefix:
        yield prefix


def load_config(
    file: Path | None = None,
    *,
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    use_file: bool = True,
) -> LoadedConfig:
    """The configuration from `flags` (dotted paths: {"service.port": 9000}), `environ`
    (default os.environ), the secrets file, the config file (`file`, else found: see the
    module docstring; none with `use_file=False`) and the profile's defaults."""
    env = os.environ if environ is None else environ
    problems: list[Problem] = []
    flag_layer: dict[str, Any] = {}
    for dotted, value in (flags or {}).items():
        _set(flag_layer, dotted.split("."), value)
    from_env = _env_layer(env, problems)
    env_layer, hooks, variables = from_env.data, from_env.hooks, from_env.names
    path = config_path(file, env) if use_file or file is not None else None
    file_layer = read_file(path) if path is not None else {}
    _secrets_in_file(file_layer, (), problems)
    secrets_path = next((layer["secrets_file"] for layer in (flag_layer, env_layer, file_layer)
                         if layer.get("secrets_file")), None)  # fmt: skip
    secrets_layer: dict[str, Any] = {}
    if secrets_path is not None:
        secret_values = read_secrets_file(Path(str(secrets_path)))
        from_secrets = _env_layer(secret_values, problems)
        secrets_layer = from_secrets.data
        hooks = {**from_secrets.hooks, **hooks}
        variables = {**from_secrets.names, **variables}
    profile = next((str(layer["profile"]) for layer in (flag_layer, env_layer, secrets_layer,
                    file_layer) if layer.get("profile")), "development")  # fmt: skip
    default_layer = PROFILE_DEFAULTS.get(profile, {}) if profile in PROFILE_NAMES else {}
    layers = {"flag": flag_layer, "env": env_layer, "secrets": secrets_layer,
              "file": file_layer, "default": default_layer}  # fmt: skip
    merged: dict[str, Any] = {}
    for name in reversed(LAYERS):
        merged = _merge(merged, layers[name])
    _fill_hooks(merged, hooks)
    sources: dict[str, str] = {}
    for name in reversed(LAYERS):
        for leaf in _leaves(layers[name]):
            sources[leaf] = name
    for name in hooks:
        sources[f"notifications.webhooks.{name}"] = "env"
    token = _PREPARED.set(merged)
    try:
        config = SapphireConfig(**flag_layer)
    except ValidationError as exc:
        refused = {p.path for p in problems}  # a secret in the file: reported once
        found = [p for p in describe(exc, sources, merged, variables) if p.path not in refused]
        raise ConfigError(problems + found) from None
    finally:
        _PREPARED.reset(token)
    if problems:
        raise ConfigError(problems)
    return LoadedConfig(config, path, sources, variables)


def _lookup(tree: Any, parts: tuple[Any, ...]) -> Any:
    for part in parts:
        if isinstance(tree, dict):
            tree = tree.get(str(part))
        elif isinstance(tree, list) and isinstance(part, int) and part < len(tree):
            tree = tree[part]
        else:
            return None
    return tree


def describe(
    exc: ValidationError,
    sources: Mapping[str, str],
    data: Any,
    variables: Mapping[str, str] | None = None,
) -> list[Problem]:
    """Each validation error as a Problem: the path, the message with the allowed keys or
    values, the value (masked when secret) and its layer."""
    out = []
    for error in exc.errors(include_url=False):
        loc = tuple(error["loc"])
        path = ".".join(str(p) for p in loc) or "(config)"
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            model = model_at([str(p) for p in loc[:-1]])
            allowed = ", ".join(model.model_fields) if model is not None else "?"
            message = f"unknown key {str(loc[-1])!r}; allowed: {allowed}"
        value: Any = _lookup(data, loc) if loc else None
        shown: str | None
        if value is None or isinstance(value, dict | list):
            shown = None
        elif is_secret(path) or isinstance(value, SecretStr):
            shown = MASK
        elif isinstance(value, str) and has_password(value):
            shown = _masked_url(value)
        else:
            shown = repr(value)
        source = None
        for prefix in _prefixes(path):
            if prefix in sources:
                source = sources[prefix]
                if source in ("env", "secrets"):
                    source = f"{source} {(variables or {}).get(prefix, env_name(prefix))}"
                break
        out.append(Problem(path, message, shown, source))
    return out

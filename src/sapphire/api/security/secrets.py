"""The JWT signing secret: where the service finds it, and the file the setup makes.

There is no default: `load_signing_secret` takes `SAPPHIRE_API_SECRET`, else the file
named by `SAPPHIRE_API_SECRET_FILE`, else `$SAPPHIRE_HOME/secrets/api.secret` (made by
`sapphire users create-admin` with `ensure_signing_secret`: 32 random bytes as hex, the
file 0600 in a 0700 folder), and refuses to go on without one. The secret is the text's
bytes (surrounding whitespace dropped); it must have at least 32 of them.
"""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Mapping
from pathlib import Path

__all__ = [
    "ENV_SECRET",
    "ENV_SECRET_FILE",
    "MIN_SECRET_BYTES",
    "SigningSecretError",
    "default_secret_path",
    "ensure_signing_secret",
    "load_signing_secret",
]

ENV_SECRET = "SAPPHIRE_API_SECRET"
ENV_SECRET_FILE = "SAPPHIRE_API_SECRET_FILE"
MIN_SECRET_BYTES = 32


class SigningSecretError(ValueError):
    """No usable signing secret (the message says what was found and what to do)."""


def default_secret_path(home: Path) -> Path:
    """`$SAPPHIRE_HOME/secrets/api.secret`."""
    return home / "secrets" / "api.secret"


def _checked(raw: str, source: str) -> bytes:
    value = raw.strip().encode()
    if len(value) < MIN_SECRET_BYTES:
        raise SigningSecretError(
            f"the API signing secret in {source} has {len(value)} bytes; at least "
            f"{MIN_SECRET_BYTES} are needed (e.g. `python -c 'import secrets; "
            "print(secrets.token_hex(32))'`)"
        )
    if len(set(value)) < 8:
        raise SigningSecretError(
            f"the API signing secret in {source} repeats a few characters "
            f"({len(set(value))} distinct): use a random one"
        )
    return value


def _read(path: Path, source: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SigningSecretError(f"{source}: {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SigningSecretError(f"{source}: cannot read {path}: {exc}") from None


def load_signing_secret(home: Path, environ: Mapping[str, str] | None = None) -> bytes:
    """The JWT signing secret (see the module's docstring); SigningSecretError naming
    every place looked at when there is none, or when it is too short."""
    env = os.environ if environ is None else environ
    if env.get(ENV_SECRET):
        return _checked(env[ENV_SECRET], ENV_SECRET)
    if env.get(ENV_SECRET_FILE):
        path = Path(env[ENV_SECRET_FILE]).expanduser()
        return _checked(_read(path, ENV_SECRET_FILE), f"{ENV_SECRET_FILE} ({path})")
    path = default_secret_path(home)
    if not path.exists():
        raise SigningSecretError(
            f"no API signing secret: set {ENV_SECRET} (at least {MIN_SECRET_BYTES} random "
            f"bytes), point {ENV_SECRET_FILE} at a file holding one, or run `sapphire users "
            f"create-admin`, which creates {path}"
        )
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise SigningSecretError(
            f"{path} is readable or writable by other users (mode {mode:04o}): "
            f"run `chmod 600 {path}`"
        )
    return _checked(_read(path, str(path)), str(path))


def ensure_signing_secret(home: Path, environ: Mapping[str, str] | None = None) -> Path | None:
    """Create `$SAPPHIRE_HOME/secrets/api.secret` when no secret is configured; the path
    created, or None if a secret was configured already (it is validated either way)."""
    env = os.environ if environ is None else environ
    path = default_secret_path(home)
    if env.get(ENV_SECRET) or env.get(ENV_SECRET_FILE) or path.exists():
        load_signing_secret(home, env)
        return None
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)  # mkdir's mode is cut by the umask, and exist_ok keeps any
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (secrets.token_hex(32) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    return path

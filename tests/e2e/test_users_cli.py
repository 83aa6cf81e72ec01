"""`sapphire users` as an operator runs it: create the first admin (a prompted or piped
password, the signing secret file made owner-only, the TOTP enrolment printed once) and
log in with what it printed; list; reset a password or a TOTP seed; refusals."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pyotp
import pytest
from fastapi import HTTPException
from typer.testing import CliRunner

from sapphire.api.security.secrets import load_signing_secret
from sapphire.api.security.service import AuthService
from sapphire.cli.users import users_app
from sapphire.store import Store

PASSWORD = "correct horse battery"
runner = CliRunner()


@pytest.fixture(autouse=True)
def _no_configured_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SAPPHIRE_API_SECRET", "SAPPHIRE_API_SECRET_FILE", "SAPPHIRE_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _totp_secret(output: str) -> str:
    match = re.search(r"secret: ([A-Z2-7]{32})", output)
    assert match, output
    return match.group(1)


def _auth(home: Path) -> AuthService:
    return AuthService(Store(), load_signing_secret(home, {}))


def test_create_admin_then_log_in_with_what_it_printed(sapphire_home: Path) -> None:
    answer = runner.invoke(
        users_app, ["create-admin", "--username", "Root"], input=f"{PASSWORD}\n{PASSWORD}\n"
    )
    assert answer.exit_code == 0, answer.output
    out = answer.output
    assert "Created admin 'root' (id 1)." in out
    assert PASSWORD not in out  # the prompt hides what is typed
    secret_file = sapphire_home / "secrets" / "api.secret"
    assert f"API signing secret: created {secret_file} (mode 0600)." in out
    assert _mode(secret_file) == 0o600 and _mode(secret_file.parent) == 0o700
    assert re.fullmatch(r"[0-9a-f]{64}\n", secret_file.read_text())
    seed = _totp_secret(out)
    assert f"otpauth://totp/Sapphire:root?secret={seed}&issuer=Sapphire" in out
    codes = re.findall(r"^  ([A-Z2-9]{4}-[A-Z2-9]{4}-[A-Z2-9]{4})$", out, re.M)
    assert len(codes) == 10
    auth = _auth(sapphire_home)
    with pytest.raises(HTTPException, match="needs a second factor"):
        auth.login("root", PASSWORD)
    pair = auth.login("root", PASSWORD, pyotp.TOTP(seed).now())
    assert auth.principal_from_bearer(pair.access_token).scopes == {"read", "trade", "admin"}
    assert auth.login("root", PASSWORD, codes[0])  # a printed recovery code works (once)
    # the same user again is refused, and the secret is left as it was
    text = secret_file.read_text()
    again = runner.invoke(users_app, ["create-admin", "--username", "root", "--password-stdin"],
                          input=f"{PASSWORD}\n")  # fmt: skip
    assert again.exit_code == 2 and "user 'root' exists already" in again.output
    assert secret_file.read_text() == text


def test_refusals_name_the_bad_value(sapphire_home: Path) -> None:
    short = runner.invoke(
        users_app, ["create-admin", "--username", "root", "--password-stdin"], input="short\n"
    )
    assert short.exit_code == 2 and "has 5 characters; at least 12 are needed" in short.output
    bad = runner.invoke(users_app, ["create-admin", "--username", "no way!", "--password-stdin"])
    assert bad.exit_code == 2 and "username 'no way!' must be 3-64 characters" in bad.output
    assert not (sapphire_home / "secrets").exists()  # nothing made on a refusal
    missing = runner.invoke(users_app, ["reset-password", "nobody", "--password-stdin"])
    assert missing.exit_code == 2 and "no user 'nobody'" in missing.output


def test_a_configured_secret_is_left_alone(
    sapphire_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SAPPHIRE_API_SECRET", "short")
    weak = runner.invoke(users_app, ["create-admin", "--username", "root", "--password-stdin"],
                         input=f"{PASSWORD}\n")  # fmt: skip
    assert weak.exit_code == 2 and "SAPPHIRE_API_SECRET has 5 bytes" in weak.output
    monkeypatch.setenv("SAPPHIRE_API_SECRET", "9f86d081884c7d659a2feaa0c55ad015")
    ok = runner.invoke(users_app, ["create-admin", "--username", "root", "--password-stdin"],
                       input=f"{PASSWORD}\n")  # fmt: skip
    assert ok.exit_code == 0, ok.output
    assert "API signing secret: configured already" in ok.output
    assert not (sapphire_home / "secrets").exists()


def test_list_reset_password_and_reset_totp(sapphire_home: Path) -> None:
    empty = runner.invoke(users_app, ["list"])
    assert empty.exit_code == 0 and "No users" in empty.output
    made = runner.invoke(users_app, ["create-admin", "--username", "root", "--password-stdin"],
                         input=f"{PASSWORD}\n")  # fmt: skip
    assert made.exit_code == 0
    auth = _auth(sapphire_home)
    auth.accounts.create("bob", PASSWORD, "trader")
    pair = auth.login("bob", PASSWORD)
    listed = runner.invoke(users_app, ["list", "--json"])
    rows = json.loads(listed.output)
    assert [(r["username"], r["role"], r["totp_enabled"]) for r in rows] == [
        ("root", "admin", True), ("bob", "trader", False),
    ]  # fmt: skip
    table = runner.invoke(users_app, ["list"])
    assert "root" in table.output and "bob" in table.output and "trader" in table.output
    reset = runner.invoke(users_app, ["reset-password", "BOB", "--password-stdin"],
                          input="a brand new passphrase\n")  # fmt: skip
    assert reset.exit_code == 0 and "Password of 'bob' replaced" in reset.output
    with pytest.raises(HTTPException):
        auth.principal_from_bearer(pair.access_token)  # its sessions ended
    with pytest.raises(HTTPException):
        auth.login("bob", PASSWORD)
    assert auth.login("bob", "a brand new passphrase")
    old_seed = _totp_secret(made.output)
    fresh = runner.invoke(users_app, ["reset-totp", "root"])
    assert fresh.exit_code == 0
    new_seed = _totp_secret(fresh.output)
    assert new_seed != old_seed
    assert auth.login("root", PASSWORD, pyotp.TOTP(new_seed).now())


def test_create_admin_in_a_real_process(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAPPHIRE_")}
    env["SAPPHIRE_HOME"] = str(home)
    code = "from sapphire.cli.users import users_app; users_app(prog_name='sapphire users')"
    done = subprocess.run(
        [sys.executable, "-c", code, "create-admin", "--username", "ops", "--password-stdin"],
        input=f"{PASSWORD}\n", capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Created admin 'ops'" in done.stdout and "otpauth://totp/Sapphire:ops" in done.stdout
    secret_file = home / "secrets" / "api.secret"
    assert _mode(secret_file) == 0o600 and _mode(secret_file.parent) == 0o700

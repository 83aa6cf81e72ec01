"""`sapphire users`: the service's users from the server's shell — the first admin (and the
signing secret the service needs), the list, and the way back in for a user who lost a
password or an authenticator (`sapphire.api.security.accounts`)."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from sapphire.cli.common import console, fail
from sapphire.cli.options import JsonOpt

if TYPE_CHECKING:
    from sapphire.api.security.accounts import TotpEnrolment, UserAccounts
    from sapphire.store import Store

__all__ = ["users_app"]

users_app = typer.Typer(
    help="The API service's users: create the first admin, list, reset a password or TOTP.",
    no_args_is_help=True,
)

PasswordStdinOpt = Annotated[
    bool,
    typer.Option(
        "--password-stdin",
        help="Read the password from standard input (one line) instead of a prompt.",
    ),
]


def _open() -> tuple[Store, UserAccounts]:
    from sapphire.api.security.accounts import UserAccounts
    from sapphire.store import Store

    try:
        store = Store()
    except ValueError as exc:
        raise fail(str(exc)) from None
    return store, UserAccounts(store)


def _password(from_stdin: bool) -> str:
    """The new password, from stdin or typed twice at a hidden prompt."""
    from sapphire.api.security.passwords import check_password

    if from_stdin:
        password = sys.stdin.readline().removesuffix("\n").removesuffix("\r")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        return check_password(password)
    except ValueError as exc:
        raise fail(str(exc)) from None


def _print_enrolment(enrolment: TotpEnrolment) -> None:
    console.print(
        "\nTOTP is on for this user. Add the account to an authenticator app (shown once):"
    )
    console.print(f"  URI:    {enrolment.uri}", highlight=False, soft_wrap=True)
    console.print(f"  secret: {enrolment.secret}", highlight=False)
    console.print("\nRecovery codes (each works once instead of a TOTP code; keep them offline):")
    for code in enrolment.recovery_codes:
        console.print(f"  {code}", highlight=False)


@users_app.command("create-admin")
def create_admin_command(
    username: Annotated[str, typer.Option("--username", help="The admin's user name.")],
    password_stdin: PasswordStdinOpt = False,
) -> None:
    """Create an admin (TOTP enrolled at once) and, if none is configured, the API's
    signing secret ($SAPPHIRE_HOME/secrets/api.secret, mode 0600)."""
    from fastapi import HTTPException

    from sapphire.api.security.passwords import check_username
    from sapphire.api.security.secrets import SigningSecretError, ensure_signing_secret
    from sapphire.config import sapphire_home

    try:
        name = check_username(username)
    except ValueError as exc:
        raise fail(str(exc)) from None
    store, accounts = _open()
    with store:
        if accounts.by_name(name) is not None:
            raise fail(f"user {name!r} exists already (reset its password with "
                       f"`sapphire users reset-password {name}`)")  # fmt: skip
        password = _password(password_stdin)
        try:
            created = ensure_signing_secret(sapphire_home())
        except SigningSecretError as exc:
            raise fail(str(exc)) from None
        try:
            user, enrolment = accounts.create(name, password, "admin", enrol_totp=True)
        except HTTPException as exc:
            raise fail(str(exc.detail)) from None
    console.print(f"Created admin {user.username!r} (id {user.id}).", highlight=False)
    if created is not None:
        console.print(
            f"API signing secret: created {created} (mode 0600).", highlight=False, soft_wrap=True
        )
    else:
        console.print("API signing secret: configured already (left as it is).")
    assert enrolment is not None  # enrol_totp=True
    _print_enrolment(enrolment)


@users_app.command("list")
def list_command(as_json: JsonOpt = False) -> None:
    """Every user: role, disabled, TOTP, locked."""
    from sapphire.api.security.accounts import iso

    store, accounts = _open()
    with store:
        users = accounts.repo.users()
    rows = []
    for u in users:
        until = accounts.locked_until(u)
        rows.append(
            {
                "id": u.id,
                "username": u.username,
                "role": u.role,
                "disabled": u.disabled,
                "totp_enabled": u.totp_enabled,
                "locked_until": None if until is None else iso(until),
                "created_at": iso(u.ts_created),
            }
        )
    if as_json:
        print(json.dumps(rows))
        return
    if not rows:
        console.print("No users: create the first admin with `sapphire users create-admin`.")
        return
    table = Table(title="users", title_justify="left")
    for column in ("id", "username", "role", "disabled", "totp", "locked until", "created"):
        table.add_column(column)
    for r in rows:
        table.add_row(
            str(r["id"]), str(r["username"]), str(r["role"]), "yes" if r["disabled"] else "no",
            "on" if r["totp_enabled"] else "off", str(r["locked_until"] or "-"),
            str(r["created_at"]),
        )  # fmt: skip
    console.print(table)


@users_app.command("reset-password")
def reset_password_command(
    username: Annotated[str, typer.Argument(help="The user whose password to replace.")],
    password_stdin: PasswordStdinOpt = False,
) -> None:
    """Give a user a new password; its lockout is lifted and its sessions end."""
    from fastapi import HTTPException

    store, accounts = _open()
    with store:
        user = accounts.by_name(username)
        if user is None:
            raise fail(f"no user {username!r} (see `sapphire users list`)")
        password = _password(password_stdin)
        try:
            accounts.set_password(user.id, password)
        except HTTPException as exc:
            raise fail(str(exc.detail)) from None
    console.print(
        f"Password of {user.username!r} replaced; its sessions were ended.", highlight=False
    )


@users_app.command("reset-totp")
def reset_totp_command(
    username: Annotated[str, typer.Argument(help="The user who lost the authenticator.")],
) -> None:
    """Give a user a new TOTP seed and recovery codes (the old ones stop working)."""
    store, accounts = _open()
    with store:
        user = accounts.by_name(username)
        if user is None:
            raise fail(f"no user {username!r} (see `sapphire users list`)")
        enrolment = accounts.reset_totp(user.id)
    console.print(f"New TOTP seed for {user.username!r}.", highlight=False)
    _print_enrolment(enrolment)

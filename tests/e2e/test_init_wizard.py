"""`sapphire init` driven through a pseudo-terminal, as a person answers it: wrong answers
(a file as the data folder, a MySQL URL, a key the exchange refuses, an unknown risk
profile, a chat id that is not a number) are asked again with the reason; the key is
checked against a local exchange and stored encrypted; the file written is valid and
mode 0600; an existing file is kept unless the user confirms."""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sapphire.data import load_ohlcv
from sapphire.ops.config_sources import load_config
from sapphire.store import Store
from sapphire.store.keyvault import KeyVault, load_master_key
from sapphire.venues.exchange import BackgroundServer, Credentials, ExchangeState, create_app

pexpect = pytest.importorskip("pexpect", reason="pexpect (the dev extra) drives the wizard")

pytestmark = pytest.mark.slow

CREDS = Credentials("sapphire-test-key", "sapphire-test-secret-0123456789abcdef")
#: `sapphire init` without depending on its registration in the `sapphire` command
LAUNCH = "import typer; from sapphire.cli.init import init_command; typer.run(init_command)"


@pytest.fixture
def exchange_url() -> Iterator[str]:
    frame, _ = load_ohlcv("sample")
    state = ExchangeState(frame.iloc[:2000], credentials=[CREDS], history=500)
    server = BackgroundServer(create_app(state)).start()
    yield server.url
    server.stop()


def spawn(tmp_path: Path, *args: str) -> Any:  # a pexpect.spawn
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SAPPHIRE_", "BYBIT_"))}
    env |= {"HOME": str(tmp_path), "SAPPHIRE_HOME": str(tmp_path / "home"), "TERM": "dumb",
            "COLUMNS": "200"}  # fmt: skip
    child = pexpect.spawn(
        sys.executable, ["-c", LAUNCH, *args], env=env, encoding="utf-8", timeout=60,
        dimensions=(40, 200),
    )  # fmt: skip
    child.logfile_read = sys.stdout
    return child


def test_the_wizard_re_asks_wrong_answers_and_writes_a_valid_file(
    tmp_path: Path, exchange_url: str
) -> None:
    not_a_folder = tmp_path / "plain-file"
    not_a_folder.write_text("x")
    data = tmp_path / "data"
    child = spawn(tmp_path, "--env", "local", "--url", exchange_url)

    child.expect_exact("Data folder")
    child.sendline(str(not_a_folder))
    child.expect_exact(f"Error: {not_a_folder} is a file, not a folder")
    child.expect_exact("Data folder")
    child.sendline(str(data))

    child.expect_exact("Database URL")
    child.sendline("mysql://db/sapphire")
    child.expect_exact("Error: database URL must start with one of sqlite://")
    child.expect_exact("Database URL")
    child.sendline("")

    child.expect_exact("Store an exchange API key now?")
    child.sendline("y")
    child.expect_exact("Key name [bybit-local]")
    child.sendline("")
    child.expect_exact("API key")
    child.sendline("wrong-key")
    child.expect_exact("API secret")
    child.sendline("wrong-secret")
    child.expect_exact(f"Error: {exchange_url} refused the key")
    child.expect_exact("API key")
    child.sendline(CREDS.key)
    child.expect_exact("API secret")
    child.sendline(CREDS.secret)
    child.expect_exact("The exchange accepted the key")
    child.expect_exact("Stored key 'bybit-local'")

    child.expect_exact("Risk profile")
    child.sendline("reckless")
    child.expect_exact("Error: 'reckless' is not one of 'aggressive', 'conservative'")
    child.expect_exact("Risk profile")
    child.sendline("aggressive")

    child.expect_exact("Telegram chat id")
    child.sendline("my-chat")
    child.expect_exact("Error: 'my-chat' is not a chat id")
    child.expect_exact("Telegram chat id")
    child.sendline("")

    child.expect_exact("Wrote")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert CREDS.secret not in (child.before or "")

    written = data / "sapphire.yaml"
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    assert CREDS.secret not in written.read_text() and CREDS.key not in written.read_text()
    config = load_config(written, environ={}).config
    assert (config.profile, config.exchange.env, config.exchange.url) == (
        "development", "local", exchange_url.rstrip("/"),
    )  # fmt: skip
    assert (config.exchange.key, config.risk.profile, config.home) == (
        "bybit-local", "aggressive", data,
    )  # fmt: skip
    with Store(config.database_url()) as store:
        vault = KeyVault(store, load_master_key(data, environ={}))
        assert vault.decrypt("bybit-local") == (CREDS.key, CREDS.secret)

    again = spawn(tmp_path, "--env", "local", "--url", exchange_url, "--home", str(data))
    again.expect_exact("exists: overwrite it?")
    again.sendline("n")
    again.expect(pexpect.EOF)
    again.close()
    assert again.exitstatus == 1
    assert load_config(written, environ={}).config.exchange.key == "bybit-local"

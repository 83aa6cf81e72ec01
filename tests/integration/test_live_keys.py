"""A live session trades with a key from the encrypted key store (`--key NAME`): the
credentials are decrypted in the node's process only, from nothing but the master key in
its environment; a key stored for another environment is refused, naming both."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from local_exchange import CREDS, Exchange, frame, no_internet
from test_live_session import assert_store_is_exchange, config, step

from sapphire.live import LiveSession
from sapphire.store import Store
from sapphire.store.keyvault import KdfParams, KeyVault

__all__ = ["frame", "no_internet"]  # the shared fixtures, used by name

MASTER = "m" * 40


def test_a_live_run_trades_with_a_stored_key(frame: pd.DataFrame, tmp_path: Path) -> None:
    ex = Exchange(frame)
    store = Store(f"sqlite:///{tmp_path / 'sapphire.db'}")
    try:
        KeyVault(
            store, MASTER.encode(), kdf=KdfParams(time_cost=1, memory_kib=8 * 1024, parallelism=1)
        ).add("rehearsal", "bybit", "local", CREDS.key, CREDS.secret)
        environ = {"SAPPHIRE_MASTER_KEY": MASTER}  # no BYBIT_LOCAL_* variables
        session = LiveSession.start(
            config(ex, key="rehearsal"), store=store, home=tmp_path, environ=environ,
            run_id="k",
        )  # fmt: skip
        try:
            for _ in range(12):
                step(session, ex)
            assert store.orders("k"), "it traded"
        finally:
            session.stop(on_exit="leave")
        assert_store_is_exchange(store, "k", ex)
        assert store.run("k").config["key"] == "rehearsal"  # resume uses it again
    finally:
        ex.server.stop()


def test_a_key_for_another_environment_is_refused(frame: pd.DataFrame, tmp_path: Path) -> None:
    ex = Exchange(frame)
    store = Store(f"sqlite:///{tmp_path / 'sapphire.db'}")
    try:
        KeyVault(
            store, MASTER.encode(), kdf=KdfParams(time_cost=1, memory_kib=8 * 1024, parallelism=1)
        ).add("main", "bybit", "testnet", CREDS.key, CREDS.secret)
        with pytest.raises(ValueError, match="stored key 'main' is for bybit testnet, not local"):
            LiveSession.start(
                config(ex, key="main"), store=store, home=tmp_path,
                environ={"SAPPHIRE_MASTER_KEY": MASTER}, run_id="k2",
            )  # fmt: skip
    finally:
        ex.server.stop()

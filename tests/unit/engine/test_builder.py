"""Every mode builds its node through `build_node`, and the same bad signal gets the same
error in every mode (vectorised kernel, event backtest, paper)."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sapphire.backtest import Backtest
from sapphire.engine import TradingNode
from sapphire.engine.config import RunConfig
from sapphire.paper import PaperConfig, PaperSession
from sapphire.store import Store
from sapphire.strategy import Param, Signals, Strategy


def _built_by(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record, for every TradingNode made from now on, the function that made it."""
    callers: list[str] = []
    init = TradingNode.__init__

    def spy(self: TradingNode, *args: Any, **kwargs: Any) -> None:
        callers.append(inspect.stack()[1].function)
        init(self, *args, **kwargs)

    monkeypatch.setattr(TradingNode, "__init__", spy)
    return callers


def test_every_mode_builds_its_node_through_the_one_builder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    callers = _built_by(monkeypatch)
    Backtest("sample", "sma_cross", engine="event", end="2022-01-02").run()
    assert callers == ["build_node"]
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    session = PaperSession.start(
        PaperConfig(speed="max", end="2022-01-01T02:00"), store=store, home=tmp_path
    )
    try:
        assert callers == ["build_node", "build_node"]
    finally:
        session.shutdown_venue()


class BadSignals(Strategy):
    """Signals broken in the way `kind` says."""

    kind = Param("entry_type", choices=["entry_type", "shape", "dtype", "codes", "stop"])

    def signals(self, bars: Any) -> Signals:
        n = len(bars)
        enter = np.zeros(n, dtype=bool)
        enter[5] = True
        if self.kind == "entry_type":
            return Signals(enter_long=enter, entry_type="limt")  # type: ignore[arg-type]
        if self.kind == "shape":
            return Signals(enter_long=enter[:-1])
        if self.kind == "dtype":
            return Signals(enter_long=np.array(["x"] * n))
        if self.kind == "codes":
            return Signals(enter_long=enter, entry_type=np.full(n, 7))
        return Signals(enter_long=enter, stop_loss=np.ones(n - 2))


def _error(run: Any) -> str:
    with pytest.raises(ValueError) as info:
        run()
    return str(info.value)


@pytest.mark.parametrize("kind", ["entry_type", "shape", "dtype", "codes", "stop"])
def test_a_bad_signal_is_rejected_identically_in_every_mode(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    end = "2022-01-01T02:00"
    vector = _error(lambda: Backtest("sample", BadSignals, kind=kind, end=end).run())
    event = _error(lambda: Backtest("sample", BadSignals, kind=kind, end=end, engine="event").run())
    monkeypatch.setattr(
        "sapphire.strategy.registry.builtin_strategies", lambda: {"bad_signals": BadSignals}
    )
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}")
    config = PaperConfig(strategy="bad_signals", params={"kind": kind}, speed="max", end=end)
    paper = _error(lambda: PaperSession.start(config, store=store, home=tmp_path))
    assert vector == event == paper
    assert vector.startswith("strategy 'bad_signals': ")
    assert store.runs() == []  # refused before anything was stored


def test_run_config_is_one_declaration_for_api_cli_and_storage() -> None:
    from dataclasses import fields

    from typer.testing import CliRunner

    from sapphire.cli.main import app

    config = RunConfig.from_options(fee=0.001, stop_loss=0.02, tick_size=None)
    assert (config.maker_fee, config.taker_fee, config.tick_size) == (0.001, 0.001, 0.0)
    assert RunConfig.from_mapping(config.to_mapping()) == config
    with pytest.raises(ValueError, match="unknown run option 'stop_los'"):
        RunConfig.from_options(stop_los=0.02)
    help_text = CliRunner().invoke(app, ["backtest", "--help"], env={"COLUMNS": "200"}).output
    for f in fields(RunConfig):
        assert f"--{f.name.replace('_', '-')}" in help_text, f.name
    paper_help = CliRunner().invoke(app, ["paper", "--help"], env={"COLUMNS": "200"}).output
    assert "--stop-loss" in paper_help and "--slippage-ticks" in paper_help


def test_a_bad_fee_is_named_as_given() -> None:
    with pytest.raises(ValueError, match=r"^fee=-0.1 is invalid"):
        RunConfig.from_options(fee=-0.1)
    with pytest.raises(ValueError, match=r"^maker_fee=0.5 is invalid"):
        RunConfig.from_options(fee=0.001, maker_fee=0.5)

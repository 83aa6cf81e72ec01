"""Graduation gates: the config, MinTRL against the PSR it inverts, the random-entry test,
tracking figures, and a whole check on the sample (deterministic with its seed)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from sapphire.optimize.graduation import (
    GateConfig,
    check_graduation,
    data_hash,
    decision_report,
    min_track_record_length,
    random_entry_test,
)
from sapphire.optimize.graduation.tracking import (
    FillArrays,
    equity_from_fills,
    tracking_error,
    trade_match,
)
from sapphire.optimize.stats import probabilistic_sharpe

RANGE = {"start": "2022-01-03", "end": "2022-01-10"}


def test_gate_config_defaults_yaml_and_refusals(tmp_path: Path) -> None:
    cfg = GateConfig()
    assert (cfg.min_dsr, cfg.max_pbo, cfg.random_trials) == (0.95, 0.5, 1000)
    path = tmp_path / "gates.yaml"
    path.write_text("min_dsr: 0.9\nrisk_profile: aggressive\n")
    loaded = GateConfig.from_yaml(path)
    assert loaded.min_dsr == 0.9 and loaded.risk_profile == "aggressive"
    assert loaded.max_pbo == 0.5
    with pytest.raises(ValueError, match=r"unknown gate setting.*min_sharpe"):
        GateConfig.from_mapping({"min_sharpe": 1})
    with pytest.raises(ValueError, match=r"min_dsr=1\.5"):
        GateConfig(min_dsr=1.5)
    with pytest.raises(ValueError, match="random_trials=10"):
        GateConfig(random_trials=10)
    with pytest.raises(AttributeError):
        cfg.min_dsr = 0.5  # type: ignore[misc]


def test_mintrl_is_where_the_psr_reaches_the_confidence() -> None:
    sr, skew, kurt = 0.05, -0.3, 5.0
    n = min_track_record_length(sr, 0.0, skew, kurt, 0.95)
    assert probabilistic_sharpe(sr, 0.0, math.ceil(n), skew, kurt) >= 0.95
    assert probabilistic_sharpe(sr, 0.0, math.floor(n) - 1, skew, kurt) < 0.95
    assert min_track_record_length(0.0, 0.0, 0.0, 3.0, 0.95) == math.inf
    # more confidence, or a weaker Sharpe, needs a longer record
    assert min_track_record_length(sr, 0.0, skew, kurt, 0.99) > n
    assert min_track_record_length(sr / 2, 0.0, skew, kurt, 0.95) > n


def test_random_entries_tell_timing_from_luck() -> None:
    rng = np.random.default_rng(1)
    prices = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 2000)))
    hold = 5
    rises = np.argsort(prices[hold:] / prices[:-hold])[::-1][:30]  # the best 30 windows
    entry, exit_ = rises.astype(np.int64), (rises + hold).astype(np.int64)
    side = np.ones(30)
    stat, p, sims = random_entry_test(prices, entry, exit_, side, fee=0.0, trials=500, seed=3)
    assert p < 0.01 and stat > sims.max()
    again = random_entry_test(prices, entry, exit_, side, fee=0.0, trials=500, seed=3)
    assert again[1] == p and np.array_equal(again[2], sims)  # seeded
    worst = np.argsort(prices[hold:] / prices[:-hold])[:30].astype(np.int64)
    _, p_bad, _ = random_entry_test(prices, worst, worst + hold, side, fee=0.0, trials=500, seed=3)
    assert p_bad > 0.9
    with pytest.raises(ValueError, match="at least one trade"):
        random_entry_test(prices, entry[:0], exit_[:0], side[:0], fee=0.0, trials=500, seed=0)


def test_tracking_figures() -> None:
    close = np.array([100.0, 101.0, 103.0, 102.0])
    fills = FillArrays(
        bar=np.array([1, 3]), side=np.array([1.0, -1.0]), qty=np.array([2.0, 2.0]),
        price=np.array([100.0, 102.0]), fee=np.array([0.5, 0.5]),
    )  # fmt: skip
    eq = equity_from_fills(close, fills, 1000.0)
    assert eq.tolist() == [1000.0, 1001.5, 1005.5, 1003.0]  # 2 x (102 - 100) - 1 fee
    assert tracking_error(eq, eq, 1000.0) == 0.0
    assert tracking_error(eq, eq + np.array([0, 0, 5, 0]), 1000.0) > 0
    later = FillArrays(fills.bar + 1, fills.side, fills.qty, fills.price, fills.fee)
    assert trade_match(fills, fills) == 1.0
    assert trade_match(fills, later) == 0.0  # every fill one bar late
    assert trade_match(fills, later, tolerance_bars=1) == 1.0


def test_a_losing_strategy_fails_and_the_check_is_reproducible(tmp_path: Path) -> None:
    gates = GateConfig(random_trials=200)
    a = check_graduation("sma_cross", {"fast": "5", "slow": "20"}, "sample", to="paper",
                         gates=gates)  # fmt: skip
    names = [g.name for g in a.gates]
    assert names == ["deflated_sharpe", "pbo", "min_track_record", "random_entries",
                     "max_drawdown"]  # fmt: skip
    by = {g.name: g for g in a.gates}
    assert by["pbo"].passed is None  # no study: not applicable, not a pass
    assert not a.passed and by["deflated_sharpe"].passed is False
    assert a.evidence["data_hash"] == data_hash(a.result.bars)  # type: ignore[union-attr]
    assert a.evidence["code_version"]["package"]
    b = check_graduation("sma_cross", {"fast": "5", "slow": "20"}, "sample", to="paper",
                         gates=gates)  # fmt: skip
    assert [g.figure for g in b.gates] == [g.figure for g in a.gates]
    with pytest.raises(ValueError, match="paper_run"):
        check_graduation("sma_cross", {}, "sample", to="live")
    with pytest.raises(ValueError, match="to='prod'"):
        check_graduation("sma_cross", {}, "sample", to="prod")
    mapping = {"id": 7, "status": "failed", "strategy": "sma_cross", "stage": "paper",
               "gates": [g.to_mapping() for g in a.gates], "evidence": a.evidence,
               "params": a.params}  # fmt: skip
    html = decision_report(mapping, tmp_path / "r.html").read_text()
    assert "deflated_sharpe" in html and a.evidence["data_hash"] in html and "FAIL" in html

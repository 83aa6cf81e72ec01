"""`size_mode="risk"`: fixed-fractional sizing from the profile's risk per trade and
each entry's stop-loss, at the venue's fill; refused for strategies without a stop."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from sapphire.domain import OrderSide
from sapphire.engine.sizing import QuantitySizer, RiskSizer
from sapphire.paper import PaperConfig, PaperSession
from sapphire.paper.client import sizer_spec
from sapphire.paper.server import make_sizer
from sapphire.risk import profile
from sapphire.store import Store

RANGE = {"start": "2022-01-03", "end": "2022-01-03 03:00"}


def _risk_sizer(stop: str, side: int, cfg: PaperConfig) -> RiskSizer:
    assert cfg.risk_profile is not None
    return RiskSizer(Decimal(stop), side, profile(cfg.risk_profile), cfg.instrument())


def test_risk_sizer_arithmetic() -> None:
    cfg = PaperConfig(size_mode="risk", lot_size=0.001)  # conservative: 1 % per trade
    buy = _risk_sizer("0.05", 1, cfg)
    # 10,000 * 1 % / (100 * 5 %) = 20
    assert buy(Decimal(100), Decimal(10_000)) == Decimal(20)
    assert _risk_sizer("0.05", -1, cfg)(Decimal(100), Decimal(10_000)) == Decimal(20)
    # quantised down to the lot
    assert buy(Decimal(300), Decimal(10_000)) == Decimal("6.666")
    assert buy(Decimal(100), Decimal(0)) == "insufficient margin"
    assert "at or below zero" in str(_risk_sizer("1.5", 1, cfg)(Decimal(1), Decimal(1)))
    aggressive = PaperConfig(size_mode="risk", risk_profile="aggressive")
    # 2 % at a balance of 10,000 -> 10,000 * 2 % / (100 * 5 %) = 40
    assert _risk_sizer("0.05", 1, aggressive)(Decimal(100), Decimal(10_000)) == 40
    with pytest.raises(ValueError, match="stop="):
        _risk_sizer("0", 1, cfg)
    with pytest.raises(ValueError, match="side="):
        _risk_sizer("0.1", 0, cfg)


def test_a_tight_stop_is_sized_within_the_margin_the_leverage_allows() -> None:
    # 10,000 * 1 % / (100 * 0.1 %) = 1,000 units (notional 100,000) cannot be held on
    # 10,000 at leverage 1: the sizer asks for what the margin check lets through instead
    cfg = PaperConfig(size_mode="risk", lot_size=0.001)
    conservative, inst = profile("conservative"), cfg.instrument()
    assert RiskSizer(Decimal("0.001"), 1, conservative, inst)(Decimal(100), Decimal(10_000)) == 100
    at_5x = RiskSizer(Decimal("0.001"), 1, conservative, inst, leverage=5)
    assert at_5x(Decimal(100), Decimal(10_000)) == 500
    # with a 0.1 % fee: notional / 1 + fee <= equity -> 10,000 / (100 * 1.001), to the lot
    fees = PaperConfig(size_mode="risk", lot_size=0.001, taker_fee=0.001, maker_fee=0.001)
    fees_inst = fees.instrument()
    capped = RiskSizer(Decimal("0.001"), -1, conservative, fees_inst)(Decimal(100), Decimal(10_000))
    assert capped == Decimal("99.900")
    assert capped * 100 + capped * 100 * Decimal("0.001") <= 10_000
    wide = RiskSizer(Decimal("0.05"), 1, conservative, inst)  # the risk size fits: kept
    assert wide(Decimal(100), Decimal(10_000)) == 20
    rebuilt = make_sizer(sizer_spec(at_5x), cfg)
    assert rebuilt is not None and rebuilt(Decimal(100), Decimal(10_000)) == 500


def test_every_sizer_crosses_to_the_venue() -> None:
    cfg = PaperConfig(size_mode="risk", lot_size=0.001)
    sizer = _risk_sizer("0.05", OrderSide.SELL.sign, cfg)
    spec = sizer_spec(sizer)
    assert spec == {"mode": "risk", "stop": "0.05", "side": -1, "leverage": "1"}
    rebuilt = make_sizer(spec, cfg)
    assert rebuilt is not None
    assert rebuilt(Decimal(100), Decimal(5_000)) == sizer(Decimal(100), Decimal(5_000)) == 10
    with pytest.raises(ValueError, match="needs the run's risk profile"):
        make_sizer(spec, PaperConfig(risk_profile=None))
    equity = QuantitySizer("equity", 0.5, 0.001)
    again = make_sizer(sizer_spec(equity), cfg)
    assert again is not None
    assert again(Decimal(300), Decimal(1_000)) == equity(Decimal(300), Decimal(1_000))
    assert equity(Decimal(300), Decimal(1_000)) == Decimal("1.666")
    with pytest.raises(ValueError, match="needs sizing it can rebuild"):
        sizer_spec(lambda px, eq: Decimal(1))


def test_an_event_backtest_sizes_by_risk_as_paper_does() -> None:
    from sapphire.backtest import Backtest

    options = {"channel": 10, "exit_channel": 5, "leverage": 10, "lot_size": 0.0001}
    r = Backtest(
        "sample", "volatility_breakout", engine="event", size_mode="risk",
        risk_profile="conservative", start=RANGE["start"], end=RANGE["end"], **options,
    ).run()  # fmt: skip
    stopped = r.trades[r.trades["exit_reason"] == "stop_loss"]
    assert len(r.trades) > 3 and len(stopped) > 0
    assert r.trades["size"].nunique() == len(r.trades)  # sized per entry, not a fixed size
    for _, trade in stopped.iterrows():
        # a stop-loss exit loses ~1 % (conservative) of about 10,000, less one lot
        assert -102 < trade["pnl"] < -90
    with pytest.raises(ValueError, match="size_mode='risk' sizes each entry"):
        Backtest("sample", "sma_cross", size_mode="risk", risk_profile="conservative")


def test_risk_sizing_needs_a_strategy_with_a_stop(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    cfg = PaperConfig(**RANGE, size_mode="risk", speed="max")  # sma_cross: no stop-loss
    with pytest.raises(ValueError, match="gives no stop-loss"):
        PaperSession.start(cfg, store=store, home=tmp_path)
    assert store.runs() == []
    with pytest.raises(ValueError, match="size_mode='bogus'"):
        PaperConfig(size_mode="bogus")


def test_a_risk_sized_session_risks_the_profiles_fraction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SAPPHIRE_PAPER_VENUE_IDLE", "60")
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    cfg = PaperConfig(
        strategy="volatility_breakout", params={"channel": 10, "exit_channel": 5}, leverage=10,
        **RANGE, size_mode="risk", speed="max", lot_size=0.0001,
    )  # fmt: skip
    s = PaperSession.start(cfg, store=store, home=tmp_path)
    s.run()
    entries = [o for o in store.orders(s.run_id) if s.node.tags.get(str(o.client_order_id))
               == "entry" and o.filled_qty > 0]  # fmt: skip
    assert entries
    for order in entries:
        legs = [o for o in store.orders(s.run_id) if o.parent_order_id == order.client_order_id]
        stop = next(o for o in legs if o.trigger_price is not None)
        assert order.avg_px is not None and stop.trigger_price is not None
        risked = order.filled_qty * abs(order.avg_px - stop.trigger_price)
        # ~1 % of the balance (equity when flat) of 10,000-ish, less one lot of rounding
        assert Decimal(90) < risked <= Decimal(102)

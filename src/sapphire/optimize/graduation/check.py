"""`check_graduation`: run every gate for a strategy moving to paper or live, and
`check_challenger`: the same gates for a challenger's shadow paper run, plus "the
challenger beats the champion" on the bars both runs traded.

The statistical gates read the strategy's backtest on the data given (and the study it
came from, when named); the paper -> live gates replay the paper run's own bars, params
and fees through the event engine and compare fill by fill and bar by bar.
"""

from __future__ import annotations

import hashlib
import math
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sapphire.backtest.result import BacktestResult
from sapphire.engine.config import RUN_OPTIONS, RunConfig
from sapphire.optimize.graduation.gates import (
    Gate,
    GateConfig,
    check_figure,
    min_track_record_length,
    random_entry_test,
)
from sapphire.optimize.graduation.tracking import (
    FillArrays,
    bar_of,
    equity_from_fills,
    sharpe,
    tracking_error,
    trade_match,
)
from sapphire.store import Store
from sapphire.store.records import RunMode
from sapphire.strategy.base import Bars

__all__ = [
    "GraduationCheck",
    "check_challenger",
    "check_graduation",
    "code_version",
    "data_hash",
    "paper_run_inputs",
]

STAGES = ("paper", "live")


@dataclass
class GraduationCheck:
    """Every gate's outcome and the evidence behind the figures (JSON data)."""

    strategy: str
    params: dict[str, Any]
    stage: str
    gates: list[Gate]
    evidence: dict[str, Any]
    kind: str = "promotion"
    result: BacktestResult | None = field(default=None, repr=False)

    @property
    def passed(self) -> bool:
        """True when every gate that applied passed."""
        return all(g.passed is not False for g in self.gates)


def data_hash(bars: Bars) -> str:
    """sha256 of the bars (times, OHLCV and timeframe): the same bars give the same hash."""
    h = hashlib.sha256(str(int(bars.timeframe_ns)).encode())
    for arr in (bars.time, bars.open, bars.high, bars.low, bars.close, bars.volume):
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


def code_version() -> dict[str, str | None]:
    """Sapphire's package version and the git commit of its source tree (None outside
    a git checkout)."""
    from sapphire import __version__

    commit: str | None = None
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
            capture_output=True, text=True, timeout=5, check=False,
        )  # fmt: skip
        if out.returncode == 0 and out.stdout.strip():
            commit = out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"package": __version__, "commit": commit}


def _statistical_gates(
    result: BacktestResult, gates: GateConfig, study: str | None, storage: str | None
) -> tuple[list[Gate], dict[str, Any]]:
    """DSR, PBO, MinTRL, random entries and drawdown of `result`, and their evidence."""
    from sapphire.optimize.stats import (
        bar_returns,
        deflated_sharpe,
        overfitting_report,
        return_moments,
    )

    cash = float(result.config["cash"])
    moments = return_moments(bar_returns(result.equity.to_numpy(), cash))
    sr, n, skew, kurt = moments["sr"], int(moments["n"]), moments["skew"], max(moments["kurt"], 1)
    evidence: dict[str, Any] = {"sharpe_per_bar": sr, "returns": n, "skew": skew, "kurt": kurt}
    out: list[Gate] = []
    sr_trials, trial_moments, best = [sr], [], 0
    if study is not None:
        from sapphire.optimize.storage import StudyStorage

        store = StudyStorage(storage)
        stored = store.get(study)
        if stored.strategy != result.strategy:
            raise ValueError(
                f"study {study!r} searched strategy {stored.strategy!r}, not {result.strategy!r}"
            )
        done = [t for t in store.load_trials(stored) if t.state == "complete" and t.moments]
        if not done:
            raise ValueError(f"study {study!r} has no complete trial with returns")
        trial_moments = [t.moments for t in done]
        sr_trials = [float(m["sr"]) for m in trial_moments if m is not None]
        match = [i for i, t in enumerate(done) if t.params == result.params]
        best = match[0] if match else 0
        evidence.update(study=study, n_trials=len(done), trial_in_study=bool(match))
    dsr = deflated_sharpe(sr, sr_trials, n, skew, kurt) if n >= 2 else math.nan
    where = f"{len(sr_trials)} trials of study {study!r}" if study else "no study: PSR against 0"
    out.append(check_figure("deflated_sharpe", dsr, ">=", gates.min_dsr, where))
    if study is None:
        why = "no study named: PBO needs the study's trials"
        out.append(Gate("pbo", None, gates.max_pbo, "<=", False if gates.require_study else None,
                        why + (" (require_study)" if gates.require_study else "")))  # fmt: skip
    else:
        pbo = overfitting_report(trial_moments, best)["pbo"]
        if pbo is None:
            out.append(
                Gate("pbo", None, gates.max_pbo, "<=", False, "not computable from the study")
            )
        else:
            out.append(check_figure("pbo", pbo, "<=", gates.max_pbo, f"CSCV over {study!r}"))
    mintrl = min_track_record_length(
        sr, gates.mintrl_benchmark_sr, skew, kurt, gates.mintrl_confidence
    )
    out.append(check_figure("min_track_record", n, ">=", mintrl,
                            f"bar returns vs MinTRL at {gates.mintrl_confidence:.0%}"))  # fmt: skip
    out.append(_random_gate(result, gates, evidence))
    out.append(_drawdown_gate(result, gates))
    evidence["metrics"] = dict(result.metrics)
    return out, evidence


def _random_gate(result: BacktestResult, gates: GateConfig, evidence: dict[str, Any]) -> Gate:
    trades = result.trades
    if trades.empty:
        return Gate("random_entries", None, gates.max_random_pvalue, "<=", False, "no trades")
    bars = result.bars
    last = len(bars) - 1
    stat, p, _sims = random_entry_test(
        bars.open, np.minimum(trades["entry_bar"].to_numpy(), last),
        np.minimum(trades["exit_bar"].to_numpy(), last),
        np.where(trades["side"].to_numpy() == "long", 1.0, -1.0),
        fee=float(result.config.get("taker_fee") or 0.0), trials=gates.random_trials,
        seed=gates.seed,
    )  # fmt: skip
    evidence.update(trades=len(trades), random_statistic=stat)
    detail = f"{len(trades)} trades vs {gates.random_trials} random entry sets (seed {gates.seed})"
    return check_figure("random_entries", p, "<=", gates.max_random_pvalue, detail)


def _drawdown_gate(result: BacktestResult, gates: GateConfig) -> Gate:
    from sapphire.risk import profile

    prof = profile(gates.risk_profile)
    limit = prof.strategy_max_drawdown if prof.strategy_max_drawdown is not None else (
        prof.max_drawdown
    )  # fmt: skip
    drawdown = abs(float(result.metrics.get("max_drawdown", math.nan)))
    if limit is None:
        return Gate("max_drawdown", drawdown, None, "<=", None,
                    f"risk profile {prof.name!r} sets no drawdown limit")  # fmt: skip
    return check_figure("max_drawdown", drawdown, "<=", float(limit), f"risk profile {prof.name!r}")


def paper_run_inputs(store: Store, run_id: str) -> tuple[dict[str, Any], Bars, FillArrays, int]:
    """A paper run's config, its bars, its fills and the bars it has closed."""
    info = store.run(run_id)
    if info.mode is not RunMode.PAPER:
        raise ValueError(f"run {run_id!r} is a {info.mode.value} run, not a paper run")
    config = dict(info.config)
    cache = Path(str(config.get("run_dir", ""))) / "bars.npz"
    if not cache.is_file():
        raise ValueError(f"paper run {run_id!r}: its bars ({cache}) are gone")
    with np.load(cache) as z:
        bars = Bars(
            time=z["time"], open=z["open"], high=z["high"], low=z["low"], close=z["close"],
            volume=z["volume"], timeframe_ns=int(z["timeframe_ns"]),
        )  # fmt: skip
    fills = store.fills(run_id)
    arr = FillArrays(
        bar=bar_of(bars.time, np.array([f.ts_ns for f in fills], dtype=np.int64)),
        side=np.array([1.0 if f.side.value == "BUY" else -1.0 for f in fills]),
        qty=np.array([float(f.last_qty) for f in fills]),
        price=np.array([float(f.last_px) for f in fills]),
        fee=np.array([float(f.fee) for f in fills]),
    )  # fmt: skip
    snaps = store.equity_snapshots(run_id)
    end = snaps[-1].ts_ns if snaps else int(bars.time[0])
    closed = int(np.searchsorted(bars.time + bars.timeframe_ns, end, side="right"))
    if fills:
        closed = max(closed, int(arr.bar.max()) + 1)
    return config, bars, arr, min(closed, len(bars))


def _replay(config: dict[str, Any], bars: Bars) -> BacktestResult:
    """The event backtest of a paper run's bars, strategy, params and run settings."""
    from sapphire.backtest import Backtest

    options = {k: v for k, v in config.items() if k in RUN_OPTIONS and k not in ("start", "end")}
    run = RunConfig.from_options(**{**options, "engine": "event"})
    return Backtest(
        bars, str(config["strategy"]), config=run, **dict(config.get("params") or {})
    ).run()


def _backtest_fills(result: BacktestResult) -> FillArrays:
    f = result.fills
    return FillArrays(
        bar=f["bar"].to_numpy().astype(np.int64),
        side=np.where(f["side"].to_numpy() == "buy", 1.0, -1.0),
        qty=f["quantity"].to_numpy().astype(np.float64),
        price=f["price"].to_numpy().astype(np.float64),
        fee=f["fee"].to_numpy().astype(np.float64),
    )


def _tracking_gates(
    store: Store, run_id: str, gates: GateConfig, strategy: str, params: dict[str, Any]
) -> tuple[list[Gate], dict[str, Any]]:
    """Trade-match rate and equity tracking error of paper run `run_id` vs its replay."""
    config, bars, paper, closed = paper_run_inputs(store, run_id)
    replay = _replay(config, bars)
    if replay.strategy != strategy or replay.params != params:
        raise ValueError(
            f"paper run {run_id!r} traded {replay.strategy} {replay.params}, "
            f"not {strategy} {params}"
        )
    cash = float(replay.config["cash"])
    bt = _backtest_fills(replay)
    keep = bt.bar < closed
    bt = FillArrays(bt.bar[keep], bt.side[keep], bt.qty[keep], bt.price[keep], bt.fee[keep])
    rate = trade_match(paper, bt, gates.match_bars)
    close = bars.close[:closed]
    te = tracking_error(equity_from_fills(close, paper, cash),
                        replay.equity.to_numpy()[:closed], cash)  # fmt: skip
    evidence = {
        "paper_run": run_id, "paper_bars": closed, "paper_fills": len(paper),
        "backtest_fills": len(bt), "paper_data_hash": data_hash(bars),
    }  # fmt: skip
    where = f"paper run {run_id!r}, {closed} bars"
    return [
        check_figure("trade_match", rate, ">=", gates.min_trade_match, where),
        check_figure("tracking_error", te, "<=", gates.max_tracking_error, where),
    ], evidence


def check_graduation(
    strategy: str,
    params: dict[str, Any] | None = None,
    data: Any = "sample",
    *,
    to: str,
    config: RunConfig | None = None,
    study: str | None = None,
    storage: str | None = None,
    paper_run: str | None = None,
    store: Store | None = None,
    gates: GateConfig | None = None,
) -> GraduationCheck:
    """Every gate for `strategy` with `params` moving `to` "paper" or "live" (which needs
    the paper run, `paper_run`, in `store`)."""
    from sapphire.backtest import Backtest

    if to not in STAGES:
        raise ValueError(f"to={to!r} is invalid: expected one of {', '.join(STAGES)}")
    if to == "live" and paper_run is None:
        raise ValueError("to='live' needs the paper run that earned it (paper_run=RUN_ID)")
    gates = gates or GateConfig()
    if gates.require_study and study is None:
        raise ValueError("the gate config requires a study (require_study: true): name one")
    bt = Backtest(data, strategy, config=config, **dict(params or {}))
    result = bt.run()
    found, evidence = _statistical_gates(result, gates, study, storage)
    if to == "live":
        assert paper_run is not None
        owned = store is None
        db = store or Store()
        try:
            tracked, more = _tracking_gates(db, paper_run, gates, result.strategy, result.params)
        finally:
            if owned:
                db.close()
        found += tracked
        evidence.update(more)
    evidence.update(
        data_hash=data_hash(result.bars), symbol=result.symbol, bars=len(result.bars),
        first_bar=str(bt.index[0]), last_bar=str(bt.index[-1]), run_config=result.config,
        code_version=code_version(), gate_config=gates.to_mapping(),
    )  # fmt: skip
    return GraduationCheck(result.strategy, dict(result.params), to, found, evidence,
                           result=result)  # fmt: skip


def check_challenger(
    champion_run: str,
    challenger_run: str,
    *,
    store: Store,
    study: str | None = None,
    storage: str | None = None,
    gates: GateConfig | None = None,
) -> GraduationCheck:
    """The challenger's shadow paper run `challenger_run` through the paper -> live gates
    (its own bars as the backtest data) plus "beats the champion": a higher per-bar
    Sharpe ratio than `champion_run`'s on the bars both runs closed."""
    gates = gates or GateConfig()
    cfg_a, bars_a, fills_a, closed_a = paper_run_inputs(store, champion_run)
    cfg_b, bars_b, fills_b, closed_b = paper_run_inputs(store, challenger_run)
    t_a, t_b = bars_a.time[:closed_a], bars_b.time[:closed_b]
    shared, ia, ib = np.intersect1d(t_a, t_b, assume_unique=True, return_indices=True)
    if shared.size < 2:
        raise ValueError(
            f"runs {champion_run!r} and {challenger_run!r} share {shared.size} closed bars: "
            "run the challenger in shadow next to the champion over the same period"
        )
    eq_a = equity_from_fills(bars_a.close[:closed_a], fills_a, float(cfg_a["cash"]))[ia]
    eq_b = equity_from_fills(bars_b.close[:closed_b], fills_b, float(cfg_b["cash"]))[ib]
    sr_a, sr_b = sharpe(eq_a[1:], float(eq_a[0])), sharpe(eq_b[1:], float(eq_b[0]))
    params = dict(cfg_b.get("params") or {})
    config = RunConfig.from_options(
        **{k: v for k, v in cfg_b.items() if k in RUN_OPTIONS and k not in ("start", "end")}
    )
    check = check_graduation(
        str(cfg_b["strategy"]), params, bars_b, to="live", config=config, study=study,
        storage=storage, paper_run=challenger_run, store=store, gates=gates,
    )  # fmt: skip
    detail = (
        f"Sharpe per bar {sr_b:.4g} vs champion {champion_run!r} {sr_a:.4g}, {shared.size} bars"
    )
    check.gates.append(check_figure("beats_champion", sr_b - sr_a, ">", 0.0, detail))
    check.evidence.update(
        champion_run=champion_run, challenger_run=challenger_run, shared_bars=int(shared.size),
        champion_sharpe=sr_a, challenger_sharpe=sr_b,
        champion={"strategy": cfg_a.get("strategy"), "params": cfg_a.get("params")},
    )  # fmt: skip
    check.kind = "challenger"
    return check

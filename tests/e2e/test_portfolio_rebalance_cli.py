"""`sapphire portfolio rebalance`, end to end on the bundled pairs: target weights held
on a schedule through the node's risk engine, the portfolio report, the refusals shown,
and clear errors for bad weights."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from sapphire.backtest.rebalance import run_rebalance
from sapphire.cli.portfolio import portfolio_app

ROOT = Path(__file__).parents[2]
DATA = ROOT / "tests" / "data"
PAIRS = {s: DATA / f"binance-{s}_BTC-5m.feather" for s in ("ETH", "ADA", "XMR")}
ARGS = [a for s, f in PAIRS.items() for a in ("--data", f"{s}={f}")]
runner = CliRunner()


def test_fixed_weights_weekly_with_a_report(tmp_path: Path) -> None:
    report = tmp_path / "r.html"
    res = runner.invoke(
        portfolio_app,
        ["rebalance", *ARGS, "--weights", "ETH=0.4,ADA=0.3,XMR=0.25", "--every", "1W",
         "--cash", "10", "--json", "--report", str(report)],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    out = json.loads(res.output.splitlines()[0])
    # the data start on a Wednesday and span three more Mondays
    assert out["rebalances"] == 4 and out["refused"] == []
    assert out["weights"] == {"ETH": 0.4, "ADA": 0.3, "XMR": 0.25}
    assert out["metrics"]["exposure"] > 0.99 and out["metrics"]["fees"] > 0
    html = report.read_text()
    assert "Portfolio backtest" in html and "Net pnl by instrument" in html


def test_the_equity_curve_agrees_with_the_node_at_every_rebalance() -> None:
    result = run_rebalance(
        PAIRS, weights={"ETH": 0.5, "XMR": 0.45}, every=600, cash=10.0, lot_size=0.01
    )
    reb = result.rebalances
    assert reb["bar"].tolist() == list(range(0, len(result.equity), 600))
    # the node's portfolio equity when each rebalance fired (the Decimal books) and the
    # per-bar curve rebuilt from the fills agree
    np.testing.assert_allclose(result.equity.iloc[reb["bar"]].to_numpy(), reb["equity"], rtol=1e-9)
    assert set(result.trades["symbol"]) == {"ETH", "XMR"}
    assert (result.orders["status"] == "filled").all()
    lots = result.trades["quantity"].to_numpy() / 0.01  # every quantity on the lot grid
    np.testing.assert_allclose(lots, np.round(lots), atol=1e-6)


def test_hrp_weights_and_a_risk_profile_denial_are_shown(tmp_path: Path) -> None:
    profile = tmp_path / "capped.yaml"
    profile.write_text(
        "name: capped\nrisk_per_trade: 0.01\npre_trade:\n  max_notional_per_order: 3\n"
    )
    res = runner.invoke(
        portfolio_app,
        ["rebalance", *ARGS, "--method", "hrp", "--lookback", "288", "--every", "2000",
         "--cash", "10", "--risk-profile", str(profile)],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "2 rebalances" in res.output
    # 10 BTC spread over three instruments: the largest order (> 3 BTC) is denied
    assert "refused" in res.output and "max_notional_per_order 3" in res.output


def test_bad_weights_are_a_clear_error() -> None:
    res = runner.invoke(portfolio_app, ["rebalance", *ARGS, "--weights", "ETH=0.8,ADA=0.4"])
    assert res.exit_code == 2 and "sum to 1.2" in res.output
    res = runner.invoke(portfolio_app, ["rebalance", *ARGS, "--weights", "DOGE=0.5"])
    assert res.exit_code == 2 and "DOGE names an unknown instrument" in res.output
    res = runner.invoke(portfolio_app, ["rebalance", *ARGS, "--weights", "ETH:0.5"])
    assert res.exit_code == 2 and "'ETH:0.5' is invalid" in res.output
    res = runner.invoke(portfolio_app, ["rebalance", *ARGS, "--every", "1Y", "--method", "hrp"])
    assert res.exit_code == 2 and "every='1Y' is invalid" in res.output


def test_the_docs_rebalancing_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = (ROOT / "docs" / "portfolio.md").read_text()
    section = text.split("## Rebalancing", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```py\n(.*?)```", section, re.S)
    assert len(blocks) == 2
    code = "\n".join(blocks).replace('"tests/data/', f'"{ROOT}/tests/data/')
    monkeypatch.chdir(tmp_path)
    scope: dict[str, object] = {}
    exec(compile(code, "docs/portfolio.md#rebalancing", "exec"), scope)
    assert (tmp_path / "rebalance.html").exists()
    assert len(scope["by_hrp"].rebalances) == 5  # type: ignore[attr-defined]

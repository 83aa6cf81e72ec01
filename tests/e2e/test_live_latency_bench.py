"""benchmarks/live_latency.py runs and measures what it says: every trade message of the
local exchange became an order that reached it, each matched by trade id and
orderLinkId, with every stage of the split present and no stage longer than the whole."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STAGES = ("transport_in", "ccxt_pro_parse", "handoff_to_node", "node_strategy_risk",
          "venue_to_ccxt", "ccxt_build_sign", "http_send", "sapphire_own")  # fmt: skip


@pytest.mark.slow
def test_the_live_latency_benchmark_measures_every_order() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "live_latency.py"), "--samples", "40",
         "--warmup", "5", "--interval-ms", "40"],
        capture_output=True, text=True, timeout=300, check=False, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout)
    assert out["not_ordered"] == 0 and out["errors"] == [], out
    for label in ("gc_on", "gc_off"):
        phase = out[label]
        assert phase["samples"] == 40, (label, phase)  # every order matched to its trade
        whole = phase["end_to_end"]
        assert 0 < whole["p50_us"] <= whole["p99_us"] <= whole["max_us"], phase
        for stage in STAGES:
            assert 0 < phase[stage]["p50_us"] <= whole["max_us"], (label, stage, phase)
        assert 0 < phase["sapphire_share_of_median"] < 1, phase

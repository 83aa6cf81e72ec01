"""ML speed: feature generation, training with CPCV, and live inference latency.

1. Feature generation: the 108-column set (3 indicators x 2 periods x 3 timeframes x
   2 shifts x 3 instruments, plus returns and calendar columns) on 1,000,000 synthetic
   1-minute bars per instrument (a random walk; the indicators do not care). Target:
   under 10 s.
2. Training: LightGBM with CPCV (6 groups, 2 test groups: 15 splits) on the bundled BTC
   month with the default features and triple-barrier labels, plus the final fit.
3. Live inference: per bar, the streaming feature row (`FeatureStream.update`), the OOD
   gate and the single-row prediction (`LivePredictor.update`; LightGBM's single-row fast
   path on one thread, `Model.predict_row`), for the trained model on
   the bundled month, with the garbage collector on at its default thresholds, as in a
   user's process (`gc_on`), and, labelled beside it, off for the measured loop
   (`gc_off`). Target: p99 under 1 ms with the collector on.

Prints one JSON object.

    python benchmarks/ml_speed.py [--bars 1000000]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import tempfile
import time

import numpy as np

from sapphire.strategy.base import Bars

MINUTE = 60_000_000_000


def synthetic(n: int, seed: int) -> Bars:
    """A random-walk 1m series of n bars."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.001, n)))
    open_ = np.concatenate(([close[0]], close[:-1]))
    spread = np.abs(rng.normal(0.0, 0.0005, n)) * close
    high = np.maximum(open_, close) + spread
    low = np.minimum(open_, close) - spread
    start = np.int64(1_600_041_600_000_000_000)  # a UTC midnight
    time_ns = start + np.arange(n, dtype=np.int64) * MINUTE
    volume = rng.uniform(1.0, 10.0, n)
    return Bars(time_ns, open_, high, low, close, volume, MINUTE)


def feature_speed(n: int) -> dict[str, float]:
    from sapphire.ml.features import FeatureSpec, build_features

    spec = FeatureSpec(
        indicators=("rsi", "zscore", "natr"), periods=(14, 50), timeframes=("1x", "5m", "15m"),
        shifts=(0, 1), instruments=("self", "eth", "sol"),
    )  # fmt: skip
    bars = synthetic(n, 1)
    others = {"eth": synthetic(n, 2), "sol": synthetic(n, 3)}
    build_features(spec, synthetic(5000, 4), {k: synthetic(5000, 5) for k in others})  # compile
    gc.collect()
    t0 = time.perf_counter()
    X = build_features(spec, bars, others)
    elapsed = time.perf_counter() - t0
    indicator_cols = sum(1 for c in X.columns if any(i in c for i in spec.indicators))
    return {
        "bars": n,
        "columns": X.shape[1],
        "indicator_columns": indicator_cols,
        "seconds": round(elapsed, 3),
        "rows_per_s": round(n / elapsed),
    }


def training_speed() -> tuple[dict[str, float], object]:
    from sapphire.ml.pipeline import TrainConfig, load_bars, train

    bars = load_bars("sample")
    t0 = time.perf_counter()
    result = train(bars, TrainConfig(importance=False))
    elapsed = time.perf_counter() - t0
    return {
        "bars": len(bars),
        "rows": int(result.lineage["rows"]),
        "features": len(result.lineage["features"]),
        "splits": int(result.metrics["cv"]["n_splits"]),
        "seconds": round(elapsed, 2),
    }, result


def inference_latency(result: object) -> dict[str, dict[str, float]]:
    from sapphire.ml.pipeline import load_bars
    from sapphire.ml.strategy import LivePredictor, resolve_model

    version = result.register("bench")  # type: ignore[attr-defined]
    resolved = resolve_model(f"{version.name}@{version.version}")
    bars = load_bars("sample")
    t, o, h, lo, c, v = bars.time, bars.open, bars.high, bars.low, bars.close, bars.volume
    out = {}
    for label in ("gc_on", "gc_off"):
        live = LivePredictor(resolved, bars.timeframe_ns)
        n = len(bars)
        lat = np.empty(n)
        gc.collect()  # the set-up's garbage is not charged to the first bars
        if label == "gc_off":
            gc.disable()
        try:
            for i in range(n):
                s = time.perf_counter_ns()
                live.update(
                    int(t[i]), float(o[i]), float(h[i]), float(lo[i]), float(c[i]), float(v[i])
                )
                lat[i] = time.perf_counter_ns() - s
        finally:
            gc.enable()
        scored = lat[live.warmup :] / 1000.0
        out[label] = {
            "bars": len(scored),
            "p50_us": round(float(np.percentile(scored, 50)), 1),
            "p99_us": round(float(np.percentile(scored, 99)), 1),
            "max_us": round(float(scored.max()), 1),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        os.environ.setdefault("SAPPHIRE_HOME", home)
        features = feature_speed(args.bars)
        training, result = training_speed()
        inference = inference_latency(result)
    print(json.dumps({
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "features_108": features,
        "features_target_s": 10.0,
        "training_lightgbm_cpcv": training,
        "inference": inference,
        "inference_target_p99_us_gc_on": 1000.0,
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()

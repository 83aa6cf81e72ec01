"""Drift checks of a running `ml` strategy (paper, live): `DriftWatch`.

On a schedule (every `every` bars) the last `window` feature rows are compared with the
model's training reference, kept in time order with the model:

- reported per feature: PSI with its band (< 0.1 stable, < 0.2 moderate, else
  significant) and the KS test;
- a breach: the window's mean or standard deviation of a feature is `z_alert` (6)
  standard errors away from the training values. Market features are persistent (an RSI
  over 50 bars moves slowly), so a window of consecutive bars holds far fewer independent
  values than rows, and PSI and KS p-values computed as if the rows were independent
  raise alarms on data that did not change. The standard errors are therefore calibrated
  on the training rows themselves: the spread of the same statistics over every window
  of the same length slid along them. A mean shift or a volatility change is caught
  within one check interval or two (tests), and stationary data stays quiet.

Calendar features are not checked (a window of consecutive bars never covers every hour
and weekday). On every bar the prediction error of the score made `horizon` bars ago, now
that its outcome is known, feeds an ADWIN detector (performance drift); only every
`horizon`-th prediction, so that the outcomes do not overlap. A breach:

- is published on the node's message bus as a `DriftEvent`,
- is appended to the run's `drift.jsonl` (and the latest per-feature report is written to
  `drift.json`), which `sapphire ml drift RUN_ID` reads,
- with `retrain=True`, retrains the model's recipe on the last `train_bars` bars seen and
  registers the new version as `challenger` (then not again for `train_bars` bars, as
  the next retrain would mostly see the same bars). The
  champion keeps trading: promoting the challenger is a human decision
  (`sapphire ml models promote`).

The prediction error: for a classifier (score = P(up) - P(down)) it is
(score - sign(realised return))^2 / 4, in [0, 1]; for a regressor the squared error of
the predicted return; for a meta model (score = P(profitable)) the squared error against
whether the primary's bet would have been profitable (sign of the realised return times
the primary's side).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sapphire.encoding import to_json
from sapphire.ml.drift import ADWIN, DriftEvent, drift_report, window_null, window_z
from sapphire.strategy.base import Bars

__all__ = ["DRIFT_LOG", "DRIFT_REPORT", "DriftWatch", "read_drift"]

DRIFT_LOG = "drift.jsonl"
DRIFT_REPORT = "drift.json"


class DriftWatch:
    """Feature and performance drift of an ml strategy's run, checked as bars arrive."""

    def __init__(
        self,
        strategy: Any,
        bars: Bars,
        run_dir: Path,
        *,
        every: int = 500,
        window: int = 2000,
        z_alert: float = 6.0,
        ks_alpha: float = 0.01,
        adwin_delta: float = 0.002,
        retrain: bool = False,
        train_bars: int = 20_000,
        publish: Callable[[DriftEvent], None] | None = None,
        registry: Any = None,
    ) -> None:
        from sapphire.ml.strategy import default_registry, feature_frame, resolve_model

        if every < 1 or window < 50:
            raise ValueError(f"drift every={every}, window={window}: expected >= 1 and >= 50")
        self.strategy = strategy
        if registry is None:
            registry = default_registry(strategy.registry or None)
        self.resolved = resolve_model(strategy.model, registry)
        reference = getattr(self.resolved.model, "reference", None)
        if not isinstance(reference, pd.DataFrame) or reference.empty:
            raise ValueError(
                f"model {strategy.model!r} carries no training reference sample for drift checks"
            )
        from sapphire.ml.features import CALENDAR_COLUMNS

        # calendar features are uniform by design: a window of hours cannot match them
        checked = [c for c in reference.columns if c not in CALENDAR_COLUMNS]
        self.reference = reference[checked]
        self.bars = bars
        self.features = feature_frame(self.resolved, bars)[checked]
        self.run_dir = run_dir
        self.every, self.window = every, window
        self.z_alert, self.ks_alpha = z_alert, ks_alpha
        if len(self.reference) < 2 * window:
            raise ValueError(
                f"drift window={window} needs a training reference of at least {2 * window} "
                f"rows, the model has {len(self.reference)}: use a smaller drift window"
            )
        self.null = window_null(self.reference, window)
        self.adwin = ADWIN(delta=adwin_delta)
        self.retrain, self.train_bars = retrain, train_bars
        self.publish = publish
        self.registry = registry
        self.horizon = int(self.resolved.recipe.label.horizon)
        self.meta = self.resolved.is_meta
        self.task = str(getattr(self.resolved.model, "task", "classification"))
        self.events: list[DriftEvent] = []
        self.retrained: list[dict[str, Any]] = []
        self._last_retrain = -(10**12)
        self._warm = self.resolved.recipe.features.warmup(bars.timeframe_ns)

    def on_bar(self, i: int) -> list[DriftEvent]:
        """Check bar `i` (its close is known); returns the drift events it raised."""
        ts = int(self.bars.time[i]) + int(self.bars.timeframe_ns)
        found: list[DriftEvent] = []
        error = self._error(i)
        if error is not None and self.adwin.update(error):
            found.append(DriftEvent(
                ts_ns=ts, kind="performance", feature=None, psi=None, ks_p=None,
                band="significant",
                message=f"prediction error changed (ADWIN): mean now {self.adwin.mean:.4f}",
            ))  # fmt: skip
        if i >= self._warm + self.window - 1 and (i - self._warm) % self.every == 0:
            found.extend(self._feature_check(i, ts))
        for event in found:
            self._record(event)
        if found and self.retrain and i - self._last_retrain >= self.train_bars:
            self._retrain(i)
        return found

    def _error(self, i: int) -> float | None:
        j = i - self.horizon
        scores = getattr(self.strategy, "last_scores", None)
        # one prediction per horizon: outcomes that share bars are not independent, and
        # ADWIN's bound assumes they are
        if (
            j < 0
            or j % self.horizon
            or scores is None
            or j >= len(scores)
            or not np.isfinite(scores[j])
        ):
            return None
        c = self.bars.close
        realised = float(np.log(c[i] / c[j]))
        score = float(scores[j])
        if self.meta:
            from sapphire.ml.strategy import primary_side, primary_signals

            if not hasattr(self, "_side"):
                lineage = self.resolved.version.lineage
                self._side = primary_side(primary_signals(lineage, self.bars), len(self.bars))
            if self._side[j] == 0:
                return None
            won = 1.0 if realised * self._side[j] > 0 else 0.0
            return (score - won) ** 2
        if self.task == "regression":
            return (score - realised) ** 2
        return (score - float(np.sign(realised))) ** 2 / 4.0

    def _feature_check(self, i: int, ts: int) -> list[DriftEvent]:
        current = self.features.iloc[i + 1 - self.window : i + 1]
        report = drift_report(self.reference, current, ks_alpha=self.ks_alpha)
        z_mean, z_std = window_z(self.null, current)
        report["z_mean"], report["z_std"] = z_mean, z_std
        # the breach rule, the one that raises events; `drift_report`'s own `drifted` (PSI or
        # KS as if rows were independent) fires on persistent features that did not change
        report["alert"] = np.maximum(np.abs(z_mean), np.abs(z_std)) >= self.z_alert
        report = report.drop(columns="drifted")
        self._write_report(i, ts, report)
        out = []
        for feature, row in report.iterrows():
            if row["alert"]:
                out.append(DriftEvent(
                    ts_ns=ts, kind="feature", feature=str(feature), psi=float(row["psi"]),
                    ks_p=float(row["ks_p"]), band=str(row["band"]),
                    message=f"{feature}: window mean z {row['z_mean']:+.1f}, std z "
                    f"{row['z_std']:+.1f} (alert at {self.z_alert:g}); PSI {row['psi']:.3f} "
                    f"({row['band']}), KS p {row['ks_p']:.2g}, last {len(current)} bars",
                ))  # fmt: skip
        return out

    def _write_report(self, i: int, ts: int, report: pd.DataFrame) -> None:
        data = {
            "bar": int(i),
            "ts_ns": ts,
            "window": int(self.window),
            "model": f"{self.resolved.version.name}@{self.resolved.version.version}",
            "features": {str(k): dict(r.items()) for k, r in report.iterrows()},
            "z_alert": self.z_alert,
            "adwin": {
                "width": int(self.adwin.width),
                "mean": self.adwin.mean,
                "detections": int(self.adwin.detections),
            },
            "retrained": self.retrained,
        }
        tmp = self.run_dir / f"{DRIFT_REPORT}.{os.getpid()}.tmp"
        tmp.write_text(to_json(data))
        os.replace(tmp, self.run_dir / DRIFT_REPORT)

    def _record(self, event: DriftEvent) -> None:
        self.events.append(event)
        with open(self.run_dir / DRIFT_LOG, "a", encoding="utf-8") as fh:
            fh.write(to_json(asdict(event)) + "\n")
        if self.publish is not None:
            self.publish(event)

    def _retrain(self, i: int) -> None:
        from sapphire.ml.pipeline import train

        self._last_retrain = i
        lo = max(0, i + 1 - self.train_bars)
        b = self.bars
        window = Bars(
            time=b.time[lo : i + 1], open=b.open[lo : i + 1], high=b.high[lo : i + 1],
            low=b.low[lo : i + 1], close=b.close[lo : i + 1], volume=b.volume[lo : i + 1],
            timeframe_ns=b.timeframe_ns,
        )  # fmt: skip
        lineage = self.resolved.version.lineage
        recipe = self.resolved.recipe
        from dataclasses import replace

        try:
            result = train(
                window, replace(recipe, importance=False), others=self.resolved.others,
                sources=lineage.get("sources", {}), primary=lineage.get("primary"),
            )  # fmt: skip
        except ValueError as exc:  # e.g. too few bars or one label class: keep trading
            entry: dict[str, Any] = {"kind": "retrain_failed", "bar": int(i), "error": str(exc)}
        else:
            version = result.register(self.resolved.version.name, self.registry, alias="challenger")
            entry = {"kind": "retrained", "bar": int(i), "version": int(version.version),
                     "train_bars": len(window)}  # fmt: skip
            self.retrained.append(entry)
        with open(self.run_dir / DRIFT_LOG, "a", encoding="utf-8") as fh:
            fh.write(to_json(entry) + "\n")


def read_drift(run_dir: Path) -> dict[str, Any]:
    """The run's drift report and events, as `DriftWatch` wrote them."""
    report_path, log_path = run_dir / DRIFT_REPORT, run_dir / DRIFT_LOG
    if not report_path.exists() and not log_path.exists():
        raise ValueError(
            f"run {run_dir.name!r} has no drift checks: they run for `ml` strategies "
            "after the first check interval"
        )
    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    events = []
    if log_path.exists():
        for line in log_path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                events.append(json.loads(line))
    return {"report": report, "events": events}

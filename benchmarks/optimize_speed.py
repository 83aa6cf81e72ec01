"""Trials per second of `sapphire.optimize` for sma_cross on the bundled BTC month.

Prints one JSON object:

- `executor`: the executor alone (`LocalExecutor.map` of a module-level function that
  runs `Backtest(...).run()` on shared bars and returns the metrics), 1 and 2 workers,
  pool start-up apart: what the scale-out layer itself costs.
- `optimize`: whole studies (`optimize(df, "sma_cross", ...)`: Optuna ask/tell, trial
  storage, the overfitting statistics at the end) with the random sampler on 1 and 2
  local workers and on Ray with 2 workers (a private `ray start --head` on loopback),
  and TPE beside them. `trials_per_s` is trials / wall time of the call, start-up
  included; `steady_trials_per_s` is the marginal rate between a short and a long
  study (start-up and the end-of-study statistics cancel out). Each figure is the
  best of `--repeat` runs (all runs are listed), as other load only ever slows a run.
- `default_jobs`: `sapphire optimize --strategy sma_cross --trials 200` (the CLI's
  defaults: TPE on the sample) in a fresh process, with the default `--jobs` and with
  `--jobs 1`, in alternating pairs; wall seconds of the whole command and the study's
  own `elapsed_s`. `--only-default-jobs` runs this part alone.
- `memory_1m_bars`: the peak memory of a study on 1,000,000 synthetic bars with 1 and
  2 workers, sampled every 50 ms over the whole process tree (coordinator, fork
  server, workers): the peak of the summed PSS (shared pages split between the
  processes that map them) and the per-process peak RSS (VmHWM).

    python benchmarks/optimize_speed.py [--trials 1000] [--tpe-trials 300] [--no-ray]
    python benchmarks/optimize_speed.py --only-default-jobs [--pairs 5]

Figures depend on the machine and on what else runs on it; `load_avg` is recorded.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from backtest_speed import synthetic_bars

STRATEGY = "sma_cross"
# 5 bps fees, 95 % of equity per trade: every trial is a realistic, solvent backtest
OPTIONS: dict[str, Any] = {"fee": 0.0005, "size": 0.95, "size_mode": "equity"}


def sample_frame() -> pd.DataFrame:
    from sapphire.data.samples import SAMPLE_PATH

    df = pd.read_csv(SAMPLE_PATH, parse_dates=["timestamp"])
    df["timestamp"] = df["timestamp"].dt.tz_localize("UTC")
    return df


def random_params(n: int, seed: int = 0) -> list[dict[str, int]]:
    """sma_cross parameter sets spread over its declared ranges."""
    rng = np.random.default_rng(seed)
    fast = rng.integers(2, 60, n)
    slow = fast + rng.integers(5, 300, n)
    return [{"fast": int(f), "slow": int(s)} for f, s in zip(fast, slow, strict=True)]


def backtest_trial(context: Any, params: dict[str, int]) -> dict[str, float]:
    """A full backtest and its metrics on the shared bars (module level: picklable)."""
    from sapphire.backtest.runner import Backtest

    return Backtest(context.load(), STRATEGY, **params, **OPTIONS).run().metrics


# ------------------------------------------------------------------- executor alone


def bench_executor(df: pd.DataFrame, trials: int, repeat: int) -> dict[str, Any]:
    from sapphire.backtest.runner import bars_from_frame
    from sapphire.optimize.executor import LocalExecutor
    from sapphire.optimize.shared import SharedBars

    items = random_params(trials)
    out: dict[str, Any] = {"trial": f"Backtest(shared bars, 'sma_cross', **{OPTIONS}).run()"}
    with SharedBars.create(bars_from_frame(df)) as handle:
        for jobs in (1, 2):
            t0 = time.perf_counter()
            with LocalExecutor(jobs) as ex:
                list(ex.map(backtest_trial, handle, items[: 4 * jobs]))
                startup = time.perf_counter() - t0
                runs = []
                for _ in range(repeat):
                    t0 = time.perf_counter()
                    results = list(ex.map(backtest_trial, handle, items))
                    runs.append(time.perf_counter() - t0)
                    assert len(results) == trials
            elapsed = min(runs)
            out[f"jobs_{jobs}"] = {
                "trials": trials,
                "startup_s": round(startup, 3),
                "trials_per_s": round(trials / elapsed, 1),
                "ms_per_trial": round(1000 * elapsed / trials, 3),
                "trials_per_s_each_run": [round(trials / run, 1) for run in runs],
            }
    out["scaling_1_to_2"] = round(out["jobs_2"]["trials_per_s"] / out["jobs_1"]["trials_per_s"], 2)
    return out


# ------------------------------------------------------------------------ optimize


def run_study(df: pd.DataFrame, trials: int, name: str, **kwargs: Any) -> tuple[float, Any]:
    from sapphire.optimize.study import optimize

    t0 = time.perf_counter()
    result = optimize(df, STRATEGY, trials=trials, seed=1, progress=False, study=name,
                      **OPTIONS, **kwargs)  # fmt: skip
    return time.perf_counter() - t0, result


def bench_study(
    df: pd.DataFrame, label: str, trials: int, short: int | None, repeat: int, **kwargs: Any
) -> dict[str, Any]:
    """Best of `repeat` studies of `trials` trials (and of `short` trials, for the marginal
    rate; None for samplers whose cost per trial grows with the trials, like TPE)."""
    walls, shorts = [], []
    result = None
    for i in range(repeat):
        if short:
            shorts.append(run_study(df, short, f"{label}-short-{i}", **kwargs)[0])
        wall, result = run_study(df, trials, f"{label}-{i}", **kwargs)
        walls.append(wall)
    assert result is not None
    wall = min(walls)
    out: dict[str, Any] = {
        "trials": trials,
        "wall_s": round(wall, 3),
        "trials_per_s": round(trials / wall, 1),
        "trials_per_s_each_run": [round(trials / w, 1) for w in walls],
    }
    if short:
        steady = (trials - short) / (wall - min(shorts))
        out["steady_trials_per_s"] = round(steady, 1)
        out["fixed_cost_s"] = round(wall - trials / steady, 3)
    out["complete"] = sum(t.state == "complete" for t in result.trials)
    out["best_value"] = result.best_value
    return out


def bench_optimize(
    df: pd.DataFrame, trials: int, tpe_trials: int, ray_address: str | None, repeat: int
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    random = out["random"] = {}
    for jobs in (1, 2):
        random[f"jobs_{jobs}"] = bench_study(
            df, f"random-{jobs}", trials, 128, repeat, sampler="random", jobs=jobs
        )
    random["scaling_1_to_2"] = round(
        random["jobs_2"]["trials_per_s"] / random["jobs_1"]["trials_per_s"], 2
    )
    random["steady_scaling_1_to_2"] = round(
        random["jobs_2"]["steady_trials_per_s"] / random["jobs_1"]["steady_trials_per_s"], 2
    )
    if ray_address:
        random["ray_2"] = bench_study(
            df, "random-ray", trials, 128, repeat, sampler="random", ray_address=ray_address
        )
    tpe = out["tpe"] = {}
    for jobs in (1, 2):
        tpe[f"jobs_{jobs}"] = bench_study(
            df, f"tpe-{jobs}", tpe_trials, None, repeat, sampler="tpe", jobs=jobs
        )
    return out


# -------------------------------------------------------------------- default jobs


def bench_default_jobs(pairs: int, trials: int = 200) -> dict[str, Any]:
    """A default CLI study with the default --jobs and with --jobs 1, in alternating
    pairs (other load then slows both sides of a pair alike)."""
    runs: dict[str, list[dict[str, float]]] = {"default": [], "jobs_1": []}
    for i in range(pairs):
        order = ["default", "jobs_1"] if i % 2 == 0 else ["jobs_1", "default"]
        for label in order:
            home = tempfile.mkdtemp(prefix="sapphire-bench-jobs-")
            cmd = [sys.executable, "-m", "sapphire", "optimize", "--strategy", STRATEGY,
                   "--trials", str(trials), "--seed", str(i + 1), "--json",
                   "--no-progress"]  # fmt: skip
            if label == "jobs_1":
                cmd += ["--jobs", "1"]
            t0 = time.perf_counter()
            done = subprocess.run(cmd, capture_output=True, text=True, check=True,
                                  env={**os.environ, "SAPPHIRE_HOME": home})  # fmt: skip
            wall = time.perf_counter() - t0
            shutil.rmtree(home, ignore_errors=True)
            study = json.loads(done.stdout)
            runs[label].append({"wall_s": round(wall, 3), "study_s": study["elapsed_s"]})
    out: dict[str, Any] = {"trials": trials, "pairs": pairs, **runs}
    ratios = [d["wall_s"] / o["wall_s"] for d, o in zip(runs["default"], runs["jobs_1"],
                                                        strict=True)]  # fmt: skip
    out["median_wall_ratio_default_to_jobs_1"] = round(float(np.median(ratios)), 3)
    return out


# -------------------------------------------------------------------------- memory


def _tree(root: int) -> list[int]:
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(parents.get(pid, []))
    return found


def _kb(path: str, field: str) -> int:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def memory_child(bars: int, trials: int, jobs: int) -> None:
    """The measured process: a random-sampler study on synthetic bars."""
    from sapphire.optimize.study import optimize

    df = synthetic_bars(bars)
    optimize(df, STRATEGY, trials=trials, sampler="random", jobs=jobs, seed=1,
             progress=False, study=f"memory-{jobs}", **OPTIONS)  # fmt: skip


def bench_memory(bars: int, trials: int, jobs: int) -> dict[str, Any]:
    code = (
        f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r});"
        "from optimize_speed import memory_child;"
        f"memory_child({bars}, {trials}, {jobs})"
    )
    proc = subprocess.Popen([sys.executable, "-c", code])
    peak_pss = peak_rss_sum = 0
    hwm: dict[int, int] = {}
    most = 0
    while proc.poll() is None:
        pss = rss = 0
        pids = _tree(proc.pid)
        most = max(most, len(pids))
        for pid in pids:
            pss += _kb(f"/proc/{pid}/smaps_rollup", "Pss")
            rss += _kb(f"/proc/{pid}/status", "VmRSS")
            peak = _kb(f"/proc/{pid}/status", "VmHWM")
            if peak:
                hwm[pid] = max(peak, hwm.get(pid, 0))
        peak_pss, peak_rss_sum = max(peak_pss, pss), max(peak_rss_sum, rss)
        time.sleep(0.05)
    if proc.returncode != 0:
        raise RuntimeError(f"memory run with jobs={jobs} failed ({proc.returncode})")
    per_process = sorted(hwm.values(), reverse=True)
    return {
        "bars": bars,
        "bars_arrays_mb": round(6 * 8 * bars / 2**20, 1),
        "trials": trials,
        "processes": most,
        "peak_pss_total_mb": round(peak_pss / 1024, 1),
        "peak_rss_sum_mb": round(peak_rss_sum / 1024, 1),
        "vmhwm_per_process_mb": [round(v / 1024, 1) for v in per_process],
    }


# ----------------------------------------------------------------------------- Ray


class LocalRay:
    """A private 2-CPU Ray head on 127.0.0.1 (`ray start --block`), stopped by its pid."""

    def __init__(self, cpus: int = 2) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        self.address = f"127.0.0.1:{port}"
        self.temp_dir = temp_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
        command = [
            str(Path(sys.executable).parent / "ray"), "start", "--head", "--block",
            "--node-ip-address", "127.0.0.1", "--port", str(port), "--num-cpus", str(cpus),
            "--include-dashboard", "false", "--disable-usage-stats", "--temp-dir", temp_dir,
        ]  # fmt: skip
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, start_new_session=True)  # fmt: skip
        lines: queue.Queue[str] = queue.Queue()

        def pump() -> None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                lines.put(line)

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.monotonic() + 120
        seen: list[str] = []
        while not any("Ray runtime started" in line for line in seen):
            try:
                seen.append(lines.get(timeout=1))
            except queue.Empty:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("ray start failed:\n" + "".join(seen)) from None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        # whatever is left in the cluster's session was started here
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(stat[3]) == self.proc.pid:  # the session this class started
                    os.kill(int(entry.name), signal.SIGKILL)
            except (OSError, IndexError, ValueError):
                continue
        shutil.rmtree(self.temp_dir, ignore_errors=True)


# ---------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=3000, help="random-sampler trials")
    parser.add_argument("--tpe-trials", type=int, default=300)
    parser.add_argument("--memory-bars", type=int, default=1_000_000)
    parser.add_argument("--memory-trials", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray measurement")
    parser.add_argument("--pairs", type=int, default=3, help="pairs of default-jobs studies")
    parser.add_argument("--only-default-jobs", action="store_true",
                        help="measure the default --jobs against --jobs 1 only")  # fmt: skip
    args = parser.parse_args()
    if args.only_default_jobs:
        print(json.dumps(bench_default_jobs(args.pairs), indent=2))
        return

    home = tempfile.mkdtemp(prefix="sapphire-bench-")
    os.environ["SAPPHIRE_HOME"] = home  # the studies' database goes here, not ~/.sapphire
    df = sample_frame()
    out: dict[str, Any] = {
        "strategy": STRATEGY,
        "data": f"bundled BTC-PERP month, {len(df)} 1m bars",
        "cpus": os.cpu_count(),
        "load_avg_before": [round(x, 2) for x in os.getloadavg()],
    }
    out["executor"] = bench_executor(df, args.trials, args.repeat)
    ray: LocalRay | None = None
    if not args.no_ray:
        if importlib.util.find_spec("ray") is None:
            out["ray_skipped"] = "Ray is not installed: pip install 'sapphire[ray]'"
        else:
            try:
                ray = LocalRay(2)
            except RuntimeError as exc:
                out["ray_skipped"] = str(exc).splitlines()[0]
    try:
        out["optimize"] = bench_optimize(
            df, args.trials, args.tpe_trials, ray.address if ray else None, args.repeat
        )
    finally:
        if ray is not None:
            ray.stop()
    out["memory_1m_bars"] = {
        f"jobs_{jobs}": bench_memory(args.memory_bars, args.memory_trials, jobs) for jobs in (1, 2)
    }
    out["default_jobs"] = bench_default_jobs(args.pairs)
    out["load_avg_after"] = [round(x, 2) for x in os.getloadavg()]
    shutil.rmtree(home, ignore_errors=True)
    random = out["optimize"]["random"]
    out["targets"] = {
        "random_2_workers_trials_per_s>=200": random["jobs_2"]["trials_per_s"] >= 200,
        # throughput scaling: the marginal rates (worker start-up and the per-study fixed
        # costs apart); the whole-call ratio of one study is `scaling_1_to_2` above
        "steady_scaling_1_to_2>=1.7": random["steady_scaling_1_to_2"] >= 1.7,
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

"""Wall time of `sapphire backtest` on the bundled BTC month, warm and cold.

Warm: the installed package with its compiled kernels cached on disk (run once
first to fill the cache). Cold: a fresh process with an empty Numba cache
(NUMBA_CACHE_DIR pointed at a new temporary folder), i.e. the very first run
after installing. Prints one JSON object.

    python benchmarks/startup_time.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_cli(env: dict[str, str]) -> float:
    exe = shutil.which("sapphire", path=str(Path(sys.executable).parent)) or "sapphire"
    t0 = time.perf_counter()
    subprocess.run(
        [exe, "backtest", "--data", "sample", "--strategy", "sma_cross", "--json"],
        env=env, check=True, capture_output=True,
    )  # fmt: skip
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    env = dict(os.environ)
    with tempfile.TemporaryDirectory() as home:
        env["SAPPHIRE_HOME"] = home
        run_cli(env)  # fill the kernel cache
        warm = [run_cli(env) for _ in range(args.repeat)]
        with tempfile.TemporaryDirectory() as cache:
            cold = run_cli({**env, "NUMBA_CACHE_DIR": cache})
    print(json.dumps({
        "command": "sapphire backtest --data sample --strategy sma_cross --json",
        "warm_s_median": round(statistics.median(warm), 3),
        "warm_s_runs": [round(w, 3) for w in warm],
        "cold_s_empty_numba_cache": round(cold, 3),
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()

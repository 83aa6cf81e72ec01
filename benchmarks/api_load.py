"""API load: requests per second and p50/p99 latency of the service under concurrent
clients, for a read route, order submission and commands to a running paper node, with
a trading node's own tick-to-order latency measured at the same time on the same machine
(the API must not slow the node).

Everything runs as a user runs it, over loopback: `sapphire serve` (uvicorn, one
process) on a temporary SAPPHIRE_HOME with SQLite, a trader's API key, and a paper node
started through the API (`POST /api/v1/nodes`: sma_cross on the bundled sample, its own
process). Two loads, each for as long as one tick-to-order run lasts:

- `read`: `GET /api/v1/portfolio/positions` from `--clients` concurrent clients.
- `order_submission`: `POST /api/v1/nodes/{run_id}/orders`, a market buy and a market
  sell of 0.001 alternately, one client: each answer is the node's acknowledgement over
  its control channel, after the order passed the node's risk engine and reached its
  venue (a refusal, 409 with the reason, is counted apart).
- `node_commands`: `POST /api/v1/nodes/{run_id}/pause` and `.../resume` alternately,
  one client (the same path: the kill switch, cancel and amend take it too).

The node-side figure is `benchmarks/tick_to_order_latency.py`'s simulated-venue run
(a tick in, the strategy's market order through the risk checks to the venue), in a
process of its own: once with the machine idle, then during each load. The service's rate
limits are raised to 10^6 a minute for the run (at the default 120 a minute per user the
limiter, not the service, would set the pace). Prints one JSON object; no assertions.

    python benchmarks/api_load.py [--clients 8] [--ticks 50000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np

HERE = Path(__file__).resolve().parent
PASSWORD = "api load benchmark password"
UNLIMITED = "1000000/minute"
TICK_RUN = (
    "import json, sys; sys.path.insert(0, sys.argv[1]); "
    "from tick_to_order_latency import run; "
    "print(json.dumps(run(int(sys.argv[2]), simulated=True, gc_off=False)))"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def service_environ(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAPPHIRE_")}
    return {
        **env,
        "SAPPHIRE_HOME": str(home),
        "SAPPHIRE_API_SECRET": secrets.token_hex(32),
        **{f"SAPPHIRE_RATE_LIMIT_{name}": UNLIMITED for name in ("USER", "IP", "LOGIN", "ORDERS")},
    }


def create_trader(env: dict[str, str]) -> None:
    """A trader in the service's store (as `sapphire users` would make one)."""
    code = (
        "import sys; from sapphire.store import Store; "
        "from sapphire.api.security.accounts import UserAccounts; "
        "UserAccounts(Store()).create('bench', sys.argv[1], 'trader')"
    )
    subprocess.run([sys.executable, "-c", code, PASSWORD], env=env, check=True)


def start_service(env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    code = (
        "import sys; from sapphire.cli.serve import serve_command; "
        "serve_command(port=int(sys.argv[1]))"
    )
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", code, str(port)], env=env, stdout=out, stderr=out
        )
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=1)
            return proc
        except httpx.TransportError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the service did not start: {log.read_text()}") from None
            time.sleep(0.1)


def api_key(base: str) -> dict[str, str]:
    """A read+trade API key of the trader (logged in once)."""
    login = httpx.post(
        f"{base}/api/v1/auth/login", json={"username": "bench", "password": PASSWORD}
    ).raise_for_status()
    session = {"Authorization": f"Bearer {login.json()['access_token']}"}
    made = httpx.post(
        f"{base}/api/v1/auth/api-keys",
        json={"name": "api-load", "scopes": ["read", "trade"]},
        headers=session,
    ).raise_for_status()
    return {"Authorization": f"Bearer {made.json()['key']}"}


def start_node(base: str, headers: dict[str, str]) -> str:
    """A paper node (sma_cross on the sample, a bar a second: it runs all benchmark long),
    once it has taken its first bar (an order needs a price to be checked)."""
    body = {
        "mode": "paper",
        "strategy": "sma_cross",
        "options": {"data": "sample", "speed": "60x", "size": 0.01, "size_mode": "fixed"},
    }
    answer = httpx.post(f"{base}/api/v1/nodes", json=body, headers=headers, timeout=60)
    answer.raise_for_status()
    run_id = str(answer.json()["run_id"])
    deadline = time.monotonic() + 60
    while True:
        status = httpx.get(f"{base}/api/v1/nodes/{run_id}", headers=headers).json()
        if status.get("status") == "running" and status.get("pid") and status.get("equity"):
            return run_id  # its equity is published with its first bar
        if time.monotonic() > deadline:
            raise RuntimeError(f"the paper node did not start: {status}")
        time.sleep(0.2)


def tick_to_order(ticks: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", TICK_RUN, str(HERE), str(ticks)],
        stdout=subprocess.PIPE,
        text=True,
    )


def figures(latencies_s: list[float], seconds: float, errors: int) -> dict[str, Any]:
    ms = np.asarray(latencies_s) * 1000
    return {
        "requests": len(latencies_s),
        "errors": errors,
        "rps": round(len(latencies_s) / seconds, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 2) if len(ms) else None,
        "p99_ms": round(float(np.percentile(ms, 99)), 2) if len(ms) else None,
    }


async def load(
    base: str, clients: int, requests: Sequence[tuple[str, str, dict[str, Any] | None]],
    headers: dict[str, str], node: subprocess.Popen[str],
) -> tuple[dict[str, Any], dict[str, Any]]:  # fmt: skip
    """Send `requests` (method, path, JSON body) round-robin from `clients` clients until
    `node`'s run ends."""
    latencies: list[float] = []
    errors = refused = 0
    reasons: set[str] = set()

    async def client(index: int) -> None:
        nonlocal errors, refused
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as http:
            k = index
            while node.poll() is None:
                method, path, body = requests[k % len(requests)]
                k += 1
                started = time.perf_counter()
                answer = await http.request(method, path, json=body)
                latencies.append(time.perf_counter() - started)
                if answer.status_code == 409:
                    refused += 1
                    reasons.add(str(answer.json().get("detail"))[:200])
                errors += answer.status_code >= 400 and answer.status_code != 409

    started = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(clients)))
    elapsed = time.perf_counter() - started
    out, _ = node.communicate()
    answers = {**figures(latencies, elapsed, errors), "refused": refused}
    if reasons:
        answers["refused_because"] = sorted(reasons)[:5]
    return answers, json.loads(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8, help="concurrent readers")
    parser.add_argument("--ticks", type=int, default=50_000, help="ticks per node run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sapphire-api-load-") as tmp:
        home = Path(tmp)
        env = service_environ(home)
        create_trader(env)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        service = start_service(env, port, home / "service.log")
        run_id = None
        try:
            headers = api_key(base)
            run_id = start_node(base, headers)
            idle = tick_to_order(args.ticks)
            idle_out, _ = idle.communicate()
            read, node_read = asyncio.run(
                load(base, args.clients, [("GET", "/api/v1/portfolio/positions", None)],
                     headers, tick_to_order(args.ticks))
            )  # fmt: skip
            orders = [
                ("POST", f"/api/v1/nodes/{run_id}/orders", {"side": side, "quantity": "0.001"})
                for side in ("BUY", "SELL")
            ]
            order, node_order = asyncio.run(
                load(base, 1, orders, headers, tick_to_order(args.ticks))
            )
            commands = [("POST", f"/api/v1/nodes/{run_id}/{c}", None) for c in ("pause", "resume")]
            command, node_command = asyncio.run(
                load(base, 1, commands, headers, tick_to_order(args.ticks))
            )
        finally:
            if run_id is not None:
                httpx.post(f"{base}/api/v1/nodes/{run_id}/stop", headers=headers, timeout=60)
            service.terminate()
            service.wait(timeout=30)
    print(
        json.dumps(
            {
                "benchmark": "api_load",
                "machine": f"{platform.machine()} {os.cpu_count()} cpus, "
                f"Python {platform.python_version()}",
                "service": "sapphire serve (uvicorn, 1 process), SQLite, rate limits raised",
                "read": {"route": "GET /api/v1/portfolio/positions",
                         "clients": args.clients, **read},
                "order_submission": {"route": "POST /api/v1/nodes/{run_id}/orders",
                                     "clients": 1, **order},
                "node_commands": {"route": "POST /api/v1/nodes/{run_id}/pause|resume",
                                  "clients": 1, **command},
                "node_tick_to_order_us": {
                    "idle": json.loads(idle_out),
                    "during_read_load": node_read,
                    "during_order_submission": node_order,
                    "during_node_commands": node_command,
                },
            }
        )
    )  # fmt: skip


if __name__ == "__main__":
    main()

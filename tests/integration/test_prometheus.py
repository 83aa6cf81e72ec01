"""A real Prometheus (Debian's `prometheus` package) scrapes a paper node running the ml
strategy (its `NodeMetrics` and `VenueMetrics` on `start_metrics_server`) and the
service's `/metrics` (uvicorn, with the bearer metrics token), through
deploy/prometheus/prometheus.yml with local targets and a 1 s scrape interval; then every
panel query of every dashboard under deploy/grafana/dashboards is evaluated through
Prometheus' HTTP API and must return data."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROM_DIR = ROOT / "deploy" / "prometheus"
DASHBOARDS = ROOT / "deploy" / "grafana" / "dashboards"
PROMETHEUS = shutil.which("prometheus") or (
    "/usr/bin/prometheus" if Path("/usr/bin/prometheus").is_file() else None
)
SECRET = "5f0c2a9be3d14f7786a1c0de42b9e8f1" * 2
TOKEN = "metrics-token-0123456789abcdef"
#: Grafana's `$__rate_interval` here: the whole test fits in it at a 1 s scrape interval
RATE_INTERVAL = "30s"

if PROMETHEUS is None and os.environ.get("CI") == "true":
    pytest.fail("prometheus is missing: apt-get install -y prometheus", pytrace=False)
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(PROMETHEUS is None, reason="prometheus missing (apt package prometheus)"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(check: Any, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (httpx.HTTPError, OSError):
            pass
        time.sleep(0.1)
    raise AssertionError(f"{what} did not happen within {timeout} s")


def panel_queries() -> Iterator[tuple[str, str, str]]:
    """(dashboard file, panel title, PromQL with the dashboard's variables filled in)."""
    for path in sorted(DASHBOARDS.glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel["targets"]:
                expr = target["expr"].replace("$__rate_interval", RATE_INTERVAL)
                yield path.name, panel["title"], re.sub(r"\$\w+", ".*", expr)


def prometheus_config(tmp: Path, node_port: int, service_port: int) -> Path:
    """deploy/prometheus/prometheus.yml scraping the local targets every second."""
    config = yaml.safe_load((PROM_DIR / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config["rule_files"] = [str(PROM_DIR / name) for name in config["rule_files"]]
    token_file = tmp / "metrics_token"
    token_file.write_text(TOKEN)
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    jobs["sapphire-node"]["static_configs"] = [{"targets": [f"127.0.0.1:{node_port}"]}]
    service = jobs["sapphire-service"]
    service["static_configs"] = [{"targets": [f"127.0.0.1:{service_port}"]}]
    service["authorization"]["credentials_file"] = str(token_file)
    path = tmp / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def model(btc_df: pd.DataFrame) -> str:
    """A small lightgbm model, promoted champion (trained on the month's first day)."""
    from sapphire.backtest.runner import bars_from_frame
    from sapphire.ml.labels import LabelSpec
    from sapphire.ml.models import ModelSpec
    from sapphire.ml.pipeline import TrainConfig, train
    from sapphire.ml.registry import ModelRegistry

    config = TrainConfig(
        model=ModelSpec.parse("lightgbm:n_estimators=10,num_leaves=7"), n_groups=4,
        n_test_groups=1, importance=False, threshold=0.05,
        label=LabelSpec(kind="triple_barrier", horizon=20, pt=1.5, sl=1.5, vol_window=60),
    )  # fmt: skip
    version = train(bars_from_frame(btc_df.iloc[:1500].reset_index(drop=True)), config).register(
        "prom"
    )
    ModelRegistry().promote(f"prom@{version.version}", "champion")
    return "prom@champion"


class Service:
    """`create_app` under uvicorn on a thread, with the metrics token."""

    def __init__(self, home: Path) -> None:
        import uvicorn

        from sapphire.api.app import create_app
        from sapphire.ops.config_service import ServiceSettings

        environ = {"SAPPHIRE_API_SECRET": SECRET, "SAPPHIRE_METRICS_TOKEN": TOKEN}
        self.app = create_app(ServiceSettings(home=home), environ=environ)
        self.port = free_port()
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)

    def __enter__(self) -> Service:
        self.thread.start()
        wait_for(lambda: self.server.started, "the service starting")
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def test_every_dashboard_query_returns_data_from_a_scraped_node_and_service(
    tmp_path: Path, model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sapphire.ml.drift import DriftEvent
    from sapphire.ops.metrics import NodeMetrics, new_registry, start_metrics_server
    from sapphire.ops.metrics_venue import VenueMetrics
    from sapphire.paper import PaperConfig, PaperSession
    from sapphire.store import Store

    monkeypatch.setenv("SAPPHIRE_PAPER_VENUE_IDLE", "60")
    # four hours of 1-minute bars in lockstep: a second or two of trading between scrapes
    config = PaperConfig(
        start="2022-01-04", end="2022-01-04 04:00", strategy="ml", params={"model": model},
        speed="max", size=0.01, maker_fee=0.0005, taker_fee=0.0005, drift_every=100,
        drift_window=300,
    )  # fmt: skip
    session = PaperSession.start(
        config, store=Store(f"sqlite:///{tmp_path / 'store.db'}"), home=tmp_path / "paper"
    )
    registry = new_registry()
    NodeMetrics(session.node, session.run_id, registry=registry).attach()
    VenueMetrics(session.venue, "paper", registry=registry).attach()
    node_server = start_metrics_server(0, registry=registry)
    prometheus: subprocess.Popen[bytes] | None = None
    with Service(tmp_path / "service") as service:
        try:
            prom_port = free_port()
            prom_url = f"http://127.0.0.1:{prom_port}"
            config_file = prometheus_config(tmp_path, node_server.server_port, service.port)
            log = (tmp_path / "prometheus.log").open("wb")
            prometheus = subprocess.Popen(
                [
                    str(PROMETHEUS), f"--config.file={config_file}",
                    f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{prom_port}",
                ],
                stdout=log, stderr=log,
            )  # fmt: skip
            log.close()
            ready = f"{prom_url}/-/ready"
            wait_for(lambda: httpx.get(ready).status_code == 200, "prometheus ready")

            def targets_up() -> bool:
                active = httpx.get(f"{prom_url}/api/v1/targets").json()["data"]["activeTargets"]
                return len(active) == 2 and all(t["health"] == "up" for t in active)

            wait_for(targets_up, "both targets scraped (node, and the service with its token)")
            jobs = service.app.state.service.jobs
            job = jobs.submit("backtest", {"strategy": "sma_cross", "data": "sample"})
            jobs.cancel(job.id)
            result: dict[str, Any] = {}
            runner = threading.Thread(target=lambda: result.update(view=session.run()))
            runner.start()
            base = f"http://127.0.0.1:{service.port}"
            while runner.is_alive():  # the service's traffic meanwhile
                assert httpx.get(f"{base}/api/v1/health").status_code == 200
                httpx.get(f"{base}/api/v1/nodes/nope")  # 401: counted by its route template
                time.sleep(0.2)
            runner.join()
            view = result["view"]
            assert view.status == "finished" and view.fills > 0
            # sample data this short raises no drift: one breach through the node's bus
            session.node.bus.publish(DriftEvent(
                ts_ns=time.time_ns(), kind="feature", feature="ret_1", psi=0.31, ks_p=0.001,
                band="alert", message="ret_1 PSI 0.31 >= 0.25",
            ))  # fmt: skip
            time.sleep(3)  # the drift counter's series needs two scrapes for increase()
            empty = []
            for name, title, expr in panel_queries():
                answer = httpx.get(f"{prom_url}/api/v1/query", params={"query": expr}).json()
                assert answer["status"] == "success", (name, title, expr, answer)
                values = [float(r["value"][1]) for r in answer["data"]["result"]]
                if not any(math.isfinite(v) for v in values):
                    empty.append(f"{name} / {title}: {expr} -> {values}")
            assert not empty, "\n".join(["panels without data:", *empty])
            rules = httpx.get(f"{prom_url}/api/v1/rules").json()["data"]["groups"]
            assert sum(len(g["rules"]) for g in rules) == 8  # alerts.yml loaded and evaluated
            assert all(r["health"] == "ok" for g in rules for r in g["rules"])
        finally:
            node_server.shutdown()
            if prometheus is not None:
                prometheus.terminate()
                try:
                    prometheus.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    prometheus.kill()
                    prometheus.wait()

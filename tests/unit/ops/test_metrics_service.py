"""The service's metrics through the whole app (`create_app`): who may read `/metrics`,
requests counted by route template and status, jobs, disk and the event loop's lag."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from sapphire.api.app import create_app
from sapphire.api.jobs import JobInfo
from sapphire.ops.config_service import ServiceSettings
from sapphire.ops.metrics_service import (
    JobsCollector,
    metrics_token,
    route_template,
)

SECRET = "5f0c2a9be3d14f7786a1c0de42b9e8f1" * 2
TOKEN = "metrics-token-0123456789"


def service_app(home: Path, token: str | None) -> tuple[TestClient, object]:
    """The app as `create_app` builds it: `/metrics` mounted, the token from the
    environment given."""
    environ = {"SAPPHIRE_API_SECRET": SECRET}
    if token is not None:
        environ["SAPPHIRE_METRICS_TOKEN"] = token
    app = create_app(ServiceSettings(home=home), environ=environ)
    return TestClient(app), app.state.metrics_registry


def scraped(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def test_metrics_need_the_token_and_count_requests_by_route_template(tmp_path: Path) -> None:
    client, _ = service_app(tmp_path, TOKEN)
    with client:
        assert client.get("/metrics").status_code == 401
        wrong = client.get("/metrics", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        assert client.get("/api/v1/auth/me").status_code == 401
        assert client.get("/api/v1/nodes/run-123").status_code == 401
        assert client.get("/no/such/path/42").status_code == 404
        time.sleep(0.6)  # the loop-lag watch (every 0.25 s) ticks meanwhile
        answer = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    got = scraped(answer.text)

    def requests(route: str, status: str) -> float:
        labels = {"method": "GET", "route": route, "status": status}
        return got[("sapphire_http_requests_total", frozenset(labels.items()))]

    assert requests("/metrics", "401") == 2
    assert requests("/api/v1/auth/me", "401") == 1
    orders = [labels for name, labels in got if name == "sapphire_http_requests_total"
              and "/nodes" in dict(labels)["route"]]  # fmt: skip
    assert [dict(labels)["route"] for labels in orders] == ["/api/v1/nodes/{run_id}"]
    assert requests("unmatched", "404") == 1
    lag = got[("sapphire_event_loop_lag_seconds_count", frozenset({"loop": "service"}.items()))]
    assert lag >= 1
    disk = [v for (name, _), v in got.items() if name == "sapphire_data_disk_free_bytes"]
    assert disk and disk[0] > 0
    assert any(name == "process_cpu_seconds_total" for name, _ in got)


def test_without_a_token_only_the_loopback_may_read(tmp_path: Path) -> None:
    client, _ = service_app(tmp_path, None)
    with client:
        refused = client.get("/metrics")  # the test client's host is "testclient"
    assert refused.status_code == 403 and "SAPPHIRE_METRICS_TOKEN" in refused.text
    loopback = TestClient(client.app, client=("127.0.0.1", 50000))
    with loopback:
        assert loopback.get("/metrics").status_code == 200


def test_jobs_are_counted_by_kind_and_status() -> None:
    now = datetime.now(UTC)

    class Jobs:
        def list_jobs(self) -> list[JobInfo]:
            kinds = [("backtest", "running"), ("backtest", "running"), ("optimize", "failed")]
            return [JobInfo(str(i), k, s, now) for i, (k, s) in enumerate(kinds)]

    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    registry.register(JobsCollector(Jobs()))
    got = scraped(generate_latest(registry).decode())
    assert got[("sapphire_jobs", frozenset({"kind": "backtest", "status": "running"}.items()))] == 2
    assert got[("sapphire_jobs", frozenset({"kind": "optimize", "status": "failed"}.items()))] == 1


def test_the_metrics_token_comes_from_the_environment_or_a_file(tmp_path: Path) -> None:
    assert metrics_token({}) is None
    assert metrics_token({"SAPPHIRE_METRICS_TOKEN": TOKEN}) == TOKEN
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    assert metrics_token({"SAPPHIRE_METRICS_TOKEN_FILE": str(path)}) == TOKEN
    with pytest.raises(ValueError, match="SAPPHIRE_METRICS_TOKEN is too short"):
        metrics_token({"SAPPHIRE_METRICS_TOKEN": "short"})
    with pytest.raises(ValueError, match=r"SAPPHIRE_METRICS_TOKEN_FILE .* cannot be read"):
        metrics_token({"SAPPHIRE_METRICS_TOKEN_FILE": str(tmp_path / "missing")})


def test_route_templates_keep_their_static_prefix() -> None:
    assert route_template("/api/v1/nodes/run-1", "/nodes/{run_id}") == "/api/v1/nodes/{run_id}"
    assert route_template("/api/v1/nodes/run-1", "/api/v1/nodes/{run_id}") == (
        "/api/v1/nodes/{run_id}"
    )
    assert route_template("/metrics", "/metrics") == "/metrics"

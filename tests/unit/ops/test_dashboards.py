"""The Grafana provisioning and dashboards under deploy/grafana: the data source and the
dashboard folder match deploy/compose.yaml, every dashboard has Grafana's shape, and
every panel query (and every alert rule) reads only metrics that Sapphire registers."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from sapphire.ops.metrics import NodeMetrics, new_registry
from sapphire.ops.metrics_service import metrics_route
from sapphire.ops.metrics_venue import VenueMetrics

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"
GRAFANA = DEPLOY / "grafana"
DASHBOARDS = {"trading", "risk", "exchange", "ml", "system"}
#: series Prometheus makes itself for each target
SCRAPE_SERIES = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan", "group_left", "group_right"}
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (not its functions, labels or keywords)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", text)
    grouping = r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)"
    text = re.sub(grouping, " ", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        before = text[match.start() - 1] if match.start() else " "
        after = text[match.end() :].lstrip()
        if before.isdigit() or before == "." or after.startswith("("):
            continue  # part of a number (1e3), or a function
        if match.group().lower() not in _KEYWORDS:
            names.add(match.group())
    return names


def registered_series(registry: CollectorRegistry) -> set[str]:
    """Every series name the registry's metric families expose."""
    out = set()
    for family in registry.collect():
        for suffix in _SUFFIXES.get(family.type, ("",)):
            out.add(family.name + suffix)
    return out


@pytest.fixture(scope="module")
def known(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """The series of a node (NodeMetrics, VenueMetrics, process) and of the service."""
    node = new_registry()
    NodeMetrics(object(), "t", registry=node)
    venue = SimpleNamespace(client=SimpleNamespace(call=lambda method, **kwargs: None))
    VenueMetrics(venue, "paper", registry=node).attach()
    service = new_registry()
    jobs = SimpleNamespace(list_jobs=lambda: [])
    home = tmp_path_factory.mktemp("home")
    app = FastAPI()
    metrics_route(app, SimpleNamespace(jobs=jobs, home=home), registry=service)
    with TestClient(app, client=("127.0.0.1", 50000)) as client:
        assert client.get("/metrics").status_code == 200  # starts the loop-lag watch
    return registered_series(node) | registered_series(service) | SCRAPE_SERIES


def dashboards() -> dict[str, dict[str, Any]]:
    return {p.stem: json.loads(p.read_text()) for p in sorted((GRAFANA / "dashboards").glob("*"))}


def datasource() -> dict[str, Any]:
    path = GRAFANA / "provisioning" / "datasources" / "prometheus.yaml"
    sources = yaml.safe_load(path.read_text())["datasources"]
    assert len(sources) == 1
    return dict(sources[0])


def test_the_metric_name_extractor_skips_functions_labels_and_keywords() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le, run_id) (rate(a_bucket{x=~"$v", le!="1"}[5m])))'
        " / on (job) group_left b_total > bool 1e3 or c offset 5m unless absent(d{y='z'})"
    )
    assert metric_names(expr) == {"a_bucket", "b_total", "c", "d"}
    assert metric_names("time() - sapphire_x > 300") == {"sapphire_x"}


def test_provisioning_points_grafana_at_prometheus_and_the_mounted_dashboards() -> None:
    source = datasource()
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    assert source["uid"] and source["access"] == "proxy"
    path = GRAFANA / "provisioning" / "dashboards" / "sapphire.yaml"
    (provider,) = yaml.safe_load(path.read_text())["providers"]
    assert provider["type"] == "file"
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]
    mounts = dict(m.split(":")[:2] for m in compose["grafana"]["volumes"])
    assert mounts["./grafana/dashboards"] == provider["options"]["path"]
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    assert "9090:9090" in " ".join(compose["prometheus"]["ports"])


def test_each_dashboard_has_grafanas_shape_and_uses_the_provisioned_datasource() -> None:
    found = dashboards()
    assert set(found) == DASHBOARDS
    uid = datasource()["uid"]
    assert len({d["uid"] for d in found.values()}) == len(found)
    for name, dash in found.items():
        assert isinstance(dash["schemaVersion"], int) and dash["schemaVersion"] >= 36, name
        assert dash["uid"].startswith("sapphire-") and dash["title"], name
        variables = {v["name"] for v in dash["templating"]["list"]}
        for v in dash["templating"]["list"]:
            assert v["datasource"]["uid"] == uid, (name, v["name"])
            assert re.fullmatch(r"label_values\(\w+, \w+\)", v["query"]["query"]), v["name"]
        panels = dash["panels"]
        assert panels and len({p["id"] for p in panels}) == len(panels), name
        for p in panels:
            where = f"{name}: panel {p.get('title')!r}"
            assert p["type"] in {"timeseries", "stat"} and p["title"], where
            assert p["datasource"] == {"type": "prometheus", "uid": uid}, where
            grid = p["gridPos"]
            assert grid["x"] + grid["w"] <= 24 and grid["w"] > 0 and grid["h"] > 0, where
            targets = p["targets"]
            assert targets and len({t["refId"] for t in targets}) == len(targets), where
            for t in targets:
                assert t["datasource"]["uid"] == uid and t["expr"].strip(), where
                used = set(re.findall(r"\$(\w+)", t["expr"])) - {"__rate_interval"}
                assert used <= variables, (where, used - variables)


def queries() -> list[tuple[str, str, str]]:
    """(dashboard, panel or variable, PromQL) of every panel target and variable query."""
    out = []
    for name, dash in dashboards().items():
        for v in dash["templating"]["list"]:
            metric = v["query"]["query"].removeprefix("label_values(").split(",")[0]
            out.append((name, f"${v['name']}", metric))
        out.extend((name, p["title"], t["expr"]) for p in dash["panels"] for t in p["targets"])
    return out


def test_every_panel_query_reads_only_registered_metrics(known: set[str]) -> None:
    unknown = {(*where, m) for *where, expr in queries() for m in metric_names(expr)
               if m not in known}  # fmt: skip
    assert not unknown
    used = {m for *_, expr in queries() for m in metric_names(expr)}
    # every Sapphire metric is on a dashboard (a histogram through its buckets)
    shown = used | {
        m.removesuffix("_bucket") + suffix
        for m in used
        if m.endswith("_bucket")
        for suffix in ("_count", "_sum")
    }
    sapphire = {m for m in known if m.startswith("sapphire_") and not m.endswith("_created")}
    assert not sapphire - shown


def test_every_alert_rule_reads_only_registered_metrics(known: set[str]) -> None:
    groups = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())["groups"]
    exprs = [rule["expr"] for group in groups for rule in group["rules"]]
    assert exprs
    unknown = {(expr, m) for expr in exprs for m in metric_names(expr) if m not in known}
    assert not unknown


def test_the_docs_list_every_metric_and_have_a_runbook_entry_for_every_alert(
    known: set[str],
) -> None:
    text = (DEPLOY.parent / "docs" / "operations.md").read_text()
    metrics = text.split("\n## Metrics\n", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^\| `(sapphire_\w+)` \|", metrics, flags=re.M))
    families = {
        re.sub(r"_(bucket|count|sum)$", "", m) if m.endswith(("_bucket", "_count", "_sum")) else m
        for m in known
        if m.startswith("sapphire_") and not m.endswith("_created")
    }
    assert listed == families
    runbook = text.split("\n## Alert runbook\n", 1)[1]
    groups = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())["groups"]
    for rule in (r for g in groups for r in g["rules"]):
        heading = f"### {rule['alert']} ({rule['labels']['severity']})"
        assert heading in runbook

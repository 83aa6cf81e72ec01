"""The alert rules under promtool (Debian's `prometheus` package): they parse, and each
alert's unit test in deploy/prometheus/alerts_test.yml passes (fires when it should,
stays quiet when it should not)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

PROM = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
PROMTOOL = shutil.which("promtool")

if PROMTOOL is None and os.environ.get("CI") == "true":
    pytest.fail("promtool is missing: apt-get install -y prometheus", pytrace=False)
pytestmark = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool missing (apt package prometheus)"
)


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *args], cwd=PROM, capture_output=True, text=True, timeout=60, check=False
    )


def test_rules_and_config_pass_promtool_check() -> None:
    rules = promtool("check", "rules", "alerts.yml")
    assert rules.returncode == 0, rules.stdout + rules.stderr
    assert "SUCCESS: 8 rules found" in rules.stdout


def test_every_alert_has_a_unit_test_that_passes() -> None:
    alerts = {
        rule["alert"]
        for group in yaml.safe_load((PROM / "alerts.yml").read_text())["groups"]
        for rule in group["rules"]
    }
    tests = yaml.safe_load((PROM / "alerts_test.yml").read_text())["tests"]
    tested = {case["alertname"] for t in tests for case in t["alert_rule_test"]}
    assert alerts == tested
    for t in tests:  # each alert both fires and stays quiet somewhere
        cases = t["alert_rule_test"]
        assert any(c["exp_alerts"] for c in cases) and any(not c["exp_alerts"] for c in cases)
    result = promtool("test", "rules", "alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_broken_expectation_fails(tmp_path: Path) -> None:
    """The unit tests can fail: a wrong expected label makes promtool exit non-zero."""
    shutil.copy(PROM / "alerts.yml", tmp_path / "alerts.yml")
    text = (PROM / "alerts_test.yml").read_text()
    (tmp_path / "alerts_test.yml").write_text(re.sub("run_id: r1", "run_id: r9", text, count=1))
    assert PROMTOOL is not None
    result = subprocess.run(
        [PROMTOOL, "test", "rules", "alerts_test.yml"], cwd=tmp_path, capture_output=True,
        text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode != 0


def test_the_scrape_config_passes_promtool_check(tmp_path: Path) -> None:
    """deploy/prometheus/prometheus.yml with its token file where the test puts one."""
    token = tmp_path / "metrics_token"
    token.write_text("metrics-token-0123456789")
    config = (PROM / "prometheus.yml").read_text()
    config = config.replace("/etc/prometheus/secrets/metrics_token", str(token))
    (tmp_path / "prometheus.yml").write_text(config)
    shutil.copy(PROM / "alerts.yml", tmp_path / "alerts.yml")
    assert PROMTOOL is not None
    result = subprocess.run(
        [PROMTOOL, "check", "config", "prometheus.yml"], cwd=tmp_path, capture_output=True,
        text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr

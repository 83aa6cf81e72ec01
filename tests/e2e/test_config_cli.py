"""`sapphire config validate` and `sapphire config show` as an operator runs them: every
problem listed with its path and exit 1, "valid" and the profile with exit 0, the effective
values with their sources, secrets masked in tables, JSON and errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sapphire.cli.config import config_app

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "123456:never-printed-token"


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    for name in [n for n in os.environ if n.startswith("SAPPHIRE_") and n != "SAPPHIRE_HOME"]:
        monkeypatch.delenv(name)
    return CliRunner()


def test_validate_lists_every_problem_and_exits_1(runner: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "service: {port: 99999, colour: blue}\nexchange: {env: moon}\n"
        f"notifications: {{telegram: {{token: '{TOKEN}', chat_ids: [1]}}}}\n",
        encoding="utf-8",
    )
    result = runner.invoke(config_app, ["validate", str(path)])
    assert result.exit_code == 1, result.output
    out = result.output
    assert f"invalid in {path}: 4 problem(s)" in out
    assert "service.port: Input should be less than or equal to 65535 (got 99999 from file)" in out
    assert "service.colour: unknown key 'colour'; allowed: host, port," in out
    assert "exchange.env: Input should be 'testnet', 'demo', 'mainnet' or 'local'" in out
    assert "notifications.telegram.token: a secret is not read from the config file" in out
    assert TOKEN not in out and "Traceback" not in out


def test_validate_says_valid_and_the_profile(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SAPPHIRE_NOTIFICATIONS__TELEGRAM__TOKEN", TOKEN)
    monkeypatch.setenv("SAPPHIRE_NOTIFICATIONS__WEBHOOKS__OPS__URL", "https://hooks.example/ops")
    monkeypatch.setenv("SAPPHIRE_SECRETS_FILE", "/dev/null")
    example = ROOT / "deploy" / "sapphire.example.yaml"
    result = runner.invoke(config_app, ["validate", str(example)])
    assert result.exit_code == 0, result.output
    assert f"valid: {example} (profile testnet)" in result.output


def test_show_prints_values_and_sources_with_secrets_masked(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[service]\nport = 7001\n[notifications.telegram]\nchat_ids = [5]\n")
    monkeypatch.setenv("SAPPHIRE_NOTIFICATIONS__TELEGRAM__TOKEN", TOKEN)
    monkeypatch.setenv("SAPPHIRE_LOGGING__LEVEL", "warning")
    result = runner.invoke(config_app, ["show", "--config", str(path), "--json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    values = shown["values"]
    assert shown["file"] == str(path)
    assert values["service.port"] == {"value": 7001, "source": "file"}
    assert values["logging.level"] == {
        "value": "WARNING",
        "source": "env (SAPPHIRE_LOGGING__LEVEL)",
    }
    assert values["exchange.env"] == {"value": "local", "source": "default"}
    assert values["notifications.telegram.token"]["value"] == "********"
    assert TOKEN not in result.output
    table = runner.invoke(config_app, ["show", "--config", str(path)], terminal_width=200)
    assert table.exit_code == 0 and TOKEN not in table.output
    assert "service.port" in table.output and "7001" in table.output and "file" in table.output


def test_show_refuses_a_bad_configuration(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SAPPHIRE_PORT", "http")
    result = runner.invoke(config_app, ["show"])
    assert result.exit_code == 1
    assert "service.port: Input should be a valid integer" in result.output
    assert "from env SAPPHIRE_PORT" in result.output

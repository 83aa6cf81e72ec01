"""The relay's daily summary goes out once a day at its time; `sapphire notify test`."""

from __future__ import annotations

from datetime import UTC, datetime
from datetime import time as day_time
from pathlib import Path

from typer.testing import CliRunner

from sapphire.cli.notify import notify_app
from sapphire.ops.notify.messages import Message
from sapphire.ops.notify.service import EventRelay, next_summary


def test_next_summary_is_strictly_after() -> None:
    at = datetime(2024, 3, 1, 18, 30, tzinfo=UTC)
    assert next_summary(at, day_time(18, 30)) == datetime(2024, 3, 2, 18, 30, tzinfo=UTC)
    assert next_summary(at, day_time(19, 0)) == datetime(2024, 3, 1, 19, 0, tzinfo=UTC)


def test_the_daily_summary_goes_out_at_midnight_for_the_day_before() -> None:
    now = [datetime(2024, 3, 1, 12, 0, tzinfo=UTC)]
    sent: list[Message] = []
    relay = EventRelay(sent.append, now=lambda: now[0])
    relay("r1", {"type": "fill", "trade_id": "T", "side": "BUY", "last_qty": "1",
                 "last_px": "10", "fee": "0.01", "fee_currency": "USDT"})  # fmt: skip
    assert [m.kind for m in sent] == ["trade"]
    now[0] = datetime(2024, 3, 1, 23, 59, tzinfo=UTC)
    assert relay.tick() is None
    now[0] = datetime(2024, 3, 2, 0, 0, 5, tzinfo=UTC)
    summary = relay.tick()
    assert summary is not None and summary.title == "Daily summary 2024-03-01"
    assert summary.text == "r1: 1 fills, volume 10, fees 0.01 USDT"
    assert relay.tick() is None and sent[-1] is summary


def test_cli_notify_test_names_an_unconfigured_channel(tmp_path: Path) -> None:
    config = tmp_path / "n.yaml"
    config.write_text("notifications:\n  enabled: true\n")
    result = CliRunner().invoke(notify_app, ["test", "slack", "--config", str(config)])
    assert result.exit_code == 2
    assert "channel 'slack' is not configured" in result.output


def test_cli_refuses_a_secret_in_the_file(tmp_path: Path) -> None:
    config = tmp_path / "n.yaml"
    config.write_text("notifications:\n  slack:\n    url: https://hooks.test/SECRET\n")
    result = CliRunner().invoke(notify_app, ["test", "slack", "--config", str(config)])
    assert result.exit_code == 2
    assert "SAPPHIRE_NOTIFICATIONS__SLACK__URL" in result.output
    assert "SECRET" not in result.output.replace("SAPPHIRE_NOTIFICATIONS__SLACK__URL", "")

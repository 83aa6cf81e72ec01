"""The notification config: typed, frozen, secrets only from the environment or a
secrets file and never printed, every bad value named."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from sapphire.ops.notify.config import NotificationsConfig, load_notifications, read_notifications

TOKEN = "123456:SECRET-token-value"
SLACK = "https://hooks.slack.test/services/T000/B000/SECRETPATH"


def test_secrets_come_from_the_environment_and_are_never_printed() -> None:
    cfg = load_notifications(
        {"telegram": {"chat_ids": [42]}, "slack": {}},
        env={
            "SAPPHIRE_NOTIFICATIONS__TELEGRAM__TOKEN": TOKEN,
            "SAPPHIRE_NOTIFICATIONS__SLACK__URL": SLACK,
        },
    )
    assert cfg.telegram is not None and cfg.telegram.token is not None
    assert cfg.telegram.token.get_secret_value() == TOKEN
    assert cfg.telegram.chat_ids == (42,)
    shown = repr(cfg) + str(cfg.model_dump()) + cfg.model_dump_json()
    assert TOKEN not in shown and "SECRETPATH" not in shown


def test_secrets_file_and_named_webhooks(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets.env"
    secrets.write_text(
        "# comment\nSAPPHIRE_NOTIFICATIONS__WEBHOOKS__OPS_1__URL=http://127.0.0.1:9/hook\n"
        "SAPPHIRE_NOTIFICATIONS__WEBHOOKS__OPS_1__HMAC_SECRET='s3cret'\n"
    )
    cfg = load_notifications({"webhooks": [{"name": "ops-1"}]}, env={}, secrets_file=secrets)
    hook = cfg.webhooks[0]
    assert hook.url is not None and hook.url.get_secret_value() == "http://127.0.0.1:9/hook"
    assert hook.hmac_secret is not None and hook.hmac_secret.get_secret_value() == "s3cret"


def test_a_secret_written_in_the_config_file_is_refused_naming_where_it_goes() -> None:
    with pytest.raises(ValueError) as err:
        load_notifications({"telegram": {"token": TOKEN, "chat_ids": [1]}}, env={})
    text = str(err.value)
    assert "notifications.telegram.token" in text
    assert "SAPPHIRE_NOTIFICATIONS__TELEGRAM__TOKEN" in text
    assert TOKEN not in text


def test_bad_values_are_named_with_their_path() -> None:
    with pytest.raises(ValueError) as err:
        load_notifications(
            {"email": {"host": "smtp.test", "sender": "bot@x.test", "to": ["nobody"],
                       "port": 70000},
             "dedup_window_s": -1, "colour": "blue"},
            env={},
        )  # fmt: skip
    text = str(err.value)
    assert "notifications.email.port" in text and "70000" in text
    assert "recipient 'nobody' is invalid" in text
    assert "notifications.dedup_window_s" in text
    assert "notifications.colour" in text  # unknown fields are rejected


def test_an_enabled_channel_without_its_secret_says_which_variable() -> None:
    with pytest.raises(ValueError, match="SAPPHIRE_NOTIFICATIONS__TELEGRAM__TOKEN"):
        load_notifications({"telegram": {"chat_ids": [1]}}, env={})
    with pytest.raises(ValueError, match="url"):
        load_notifications({"discord": {}}, env={})


def test_a_webhook_url_must_be_http_and_is_masked_in_the_error() -> None:
    with pytest.raises(ValueError) as err:
        load_notifications(
            {"slack": {}}, env={"SAPPHIRE_NOTIFICATIONS__SLACK__URL": "ftp://x/SECRETPATH"}
        )
    assert "http(s)" in str(err.value) and "SECRETPATH" not in str(err.value)


def test_the_config_is_frozen() -> None:
    cfg = NotificationsConfig()
    with pytest.raises(ValidationError):
        cfg.retries = 5  # type: ignore[misc]


def test_read_a_yaml_file_section(tmp_path: Path) -> None:
    path = tmp_path / "sapphire.yaml"
    path.write_text("notifications:\n  heartbeat_timeout_s: 7\n  summary_at: '18:30'\n")
    cfg = read_notifications(path, env={})
    assert cfg.heartbeat_timeout_s == 7 and cfg.summary_at.hour == 18
    path.write_text("- a list\n")
    with pytest.raises(ValueError, match="expected a mapping"):
        read_notifications(path, env={})

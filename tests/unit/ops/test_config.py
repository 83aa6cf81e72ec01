"""`SapphireConfig` and `load_config`: sections, precedence of the sources, profiles and
their rules, secrets kept out of the file and masked, errors with paths and allowed values,
the example file and the generated reference in docs/operations.md."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from sapphire.api.settings import ServiceSettings
from sapphire.ops.config import SapphireConfig
from sapphire.ops.config_report import effective_values, render_reference
from sapphire.ops.config_sources import MASK, ConfigError, load_config

ROOT = Path(__file__).resolve().parents[3]
TOKEN = "123456:telegram-token-never-shown"


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def problems(exc: pytest.ExceptionInfo[ConfigError]) -> dict[str, str]:
    return {p.path: str(p) for p in exc.value.problems}


def test_defaults_are_the_development_profiles(tmp_path: Path) -> None:
    loaded = load_config(environ={}, use_file=False)
    config = loaded.config
    assert config.profile == "development" and loaded.file is None
    assert (config.exchange.env, config.exchange.url) == ("local", "http://127.0.0.1:8787")
    assert (config.logging.level, config.risk.profile) == ("DEBUG", "conservative")
    assert isinstance(config.service, ServiceSettings) and config.service.port == 8000
    assert loaded.source_of("exchange.env") == "default"


def test_precedence_is_flag_env_secrets_file_default(tmp_path: Path) -> None:
    config_file = write(
        tmp_path / "c.yaml",
        "service: {port: 7001, host: 127.0.0.2, rate_limit_ip: 5/minute}\n"
        "logging: {level: warning, retention: 3}\n",
    )
    secrets = write(tmp_path / "s.env", "SAPPHIRE_SERVICE__HOST=127.0.0.3\n")
    env = {
        "SAPPHIRE_SERVICE__PORT": "7002",
        "SAPPHIRE_SECRETS_FILE": str(secrets),
        "SAPPHIRE_LOGGING__RETENTION": "4",
    }
    loaded = load_config(config_file, flags={"service.port": 7003}, environ=env)
    config = loaded.config
    assert config.service.port == 7003 and loaded.source_of("service.port") == "flag"
    assert config.service.host == "127.0.0.3" and loaded.source_of("service.host") == "secrets"
    assert config.logging.retention == 4 and loaded.source_of("logging.retention") == "env"
    assert config.logging.level == "WARNING" and loaded.source_of("logging.level") == "file"
    assert config.service.rate_limit_ip == "5/minute"
    assert loaded.source_of("service.docs") == "default"


def test_flat_service_variables_still_work_and_nested_ones_win() -> None:
    env = {
        "SAPPHIRE_PORT": "9001",
        "SAPPHIRE_HOST": "127.0.0.9",
        "SAPPHIRE_SERVICE__HOST": "127.0.0.8",
        "SAPPHIRE_DATABASE_URL": "sqlite:////tmp/x.db",
        "SAPPHIRE_REDIS_URL": "redis://127.0.0.1:6379/3",
        "SAPPHIRE_CORS_ORIGINS": "https://dash.example.com, http://localhost:3000/",
        "SAPPHIRE_API_SECRET": "not a setting of the configuration",
        "SAPPHIRE_MASTER_KEY": "neither",
    }
    loaded = load_config(environ=env, use_file=False)
    config = loaded.config
    assert (config.service.port, config.service.host) == (9001, "127.0.0.8")
    assert config.database.url == "sqlite:////tmp/x.db"
    assert config.redis.url == config.service.redis_url == "redis://127.0.0.1:6379/3"
    assert config.service.cors_origins == ["https://dash.example.com", "http://localhost:3000"]
    shown = {e.path: e.source for e in effective_values(loaded)}
    assert shown["service.port"] == "env (SAPPHIRE_PORT)"
    assert shown["database.url"] == "env (SAPPHIRE_DATABASE_URL)"


def test_the_file_is_found_by_flag_variable_or_home(tmp_path: Path) -> None:
    toml = write(tmp_path / "c.toml", '[service]\nport = 7100\n[logging]\nformat = "json"\n')
    assert load_config(toml, environ={}).config.service.port == 7100
    by_var = load_config(environ={"SAPPHIRE_CONFIG": str(toml)})
    assert by_var.file == toml and by_var.config.logging.format == "json"
    home = tmp_path / "home"
    home.mkdir()
    write(home / "sapphire.yaml", "service: {port: 7200}\n")
    found = load_config(environ={"SAPPHIRE_HOME": str(home)})
    assert found.file == home / "sapphire.yaml" and found.config.service.port == 7200
    assert found.config.home == home


@pytest.mark.parametrize(
    ("text", "suffix", "message"),
    [
        ("service: [1, 2\n", ".yaml", "is not valid YAML"),
        ("[service\n", ".toml", "is not valid TOML"),
        ("- a\n- b\n", ".yaml", "must hold a mapping of sections"),
        ("a=1\n", ".ini", "expected a .yaml, .yml or .toml file"),
    ],
)
def test_an_unreadable_file_is_named(tmp_path: Path, text: str, suffix: str, message: str) -> None:
    path = write(tmp_path / f"c{suffix}", text)
    with pytest.raises(ConfigError, match=message) as refused:
        load_config(path, environ={})
    assert str(path) in str(refused.value)


def test_unknown_keys_are_named_with_their_path_and_the_allowed_keys(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yaml", "servce: {}\nexchange: {envv: testnet}\n")
    with pytest.raises(ConfigError) as refused:
        load_config(path, environ={"SAPPHIRE_LOGGING__LEVLE": "INFO", "SAPPHIRE_FOO__BAR": "1"})
    found = problems(refused)
    assert "unknown key 'servce'; allowed: profile, home, secrets_file, database" in found["servce"]
    assert "allowed: venue, env, url, key, confirm_mainnet" in found["exchange.envv"]
    assert "from env SAPPHIRE_LOGGING__LEVLE" in found["logging.levle"]
    assert "unknown section 'foo'" in found["SAPPHIRE_FOO__BAR"]


def test_every_bad_value_is_named_with_what_is_allowed(tmp_path: Path) -> None:
    path = write(
        tmp_path / "c.yaml",
        "profile: prod\nservice: {port: 0, cors_origins: ['*']}\nexchange: {env: moon}\n"
        "logging: {format: xml, rotation: weekly}\nrisk: {profile: reckless}\n",
    )
    with pytest.raises(ConfigError) as refused:
        load_config(path, environ={})
    found = problems(refused)
    assert "'development', 'testnet' or 'mainnet' (got 'prod' from file)" in found["profile"]
    assert "greater than or equal to 1 (got 0 from file)" in found["service.port"]
    assert "origin '*' is refused" in found["service.cors_origins"]
    assert "'testnet', 'demo', 'mainnet' or 'local' (got 'moon'" in found["exchange.env"]
    assert "'json', 'console' or 'auto'" in found["logging.format"]
    assert "rotation must be a size" in found["logging.rotation"]
    assert "expected one of aggressive, conservative" in found["risk.profile"]


def test_the_service_section_is_service_settings_validated_once(tmp_path: Path) -> None:
    bad = write(tmp_path / "c.yaml", "service: {rate_limit_login: lots}\n")
    with pytest.raises(ConfigError, match="rate limit 'lots' is not in the limits notation"):
        load_config(bad, environ={})
    home = write(tmp_path / "h.yaml", "service: {database_url: 'sqlite:///x.db'}\n")
    with pytest.raises(ConfigError, match=r"service.database_url is set by database.url"):
        load_config(home, environ={})
    config = load_config(
        environ={"SAPPHIRE_HOME": str(tmp_path / "h"), "SAPPHIRE_PORT": "9100"}, use_file=False
    ).config
    settings = config.service_settings()
    assert settings.port == 9100 and settings.home == tmp_path / "h"
    assert settings.resolved_database_url() == f"sqlite:///{tmp_path / 'h' / 'sapphire.db'}"


def test_a_secret_in_the_file_is_refused_and_never_echoed(tmp_path: Path) -> None:
    path = write(
        tmp_path / "c.yaml",
        f"notifications:\n  telegram: {{token: '{TOKEN}', chat_ids: [1]}}\n"
        "database: {url: 'postgresql+psycopg://bob:hunter22@db/sapphire'}\n",
    )
    with pytest.raises(ConfigError) as refused:
        load_config(path, environ={})
    text = str(refused.value)
    assert TOKEN not in text and "hunter22" not in text
    found = problems(refused)
    assert "set SAPPHIRE_NOTIFICATIONS__TELEGRAM__TOKEN" in found["notifications.telegram.token"]
    assert MASK in found["database.url"] and "database.url_file" in found["database.url"]


def test_secrets_come_from_the_environment_or_the_secrets_file_masked(tmp_path: Path) -> None:
    path = write(
        tmp_path / "c.yaml",
        "notifications:\n  telegram: {chat_ids: [42]}\n  webhooks: [{name: ops-team}]\n",
    )
    secrets = write(
        tmp_path / "s.env",
        "# comment\nSAPPHIRE_NOTIFICATIONS__WEBHOOKS__OPS_TEAM__URL=https://hooks.example/x\n",
    )
    env = {"SAPPHIRE_NOTIFICATIONS__TELEGRAM__TOKEN": TOKEN, "SAPPHIRE_SECRETS_FILE": str(secrets)}
    loaded = load_config(path, environ=env)
    notifications = loaded.config.notifications
    assert notifications.telegram is not None and notifications.telegram.token is not None
    assert notifications.telegram.token.get_secret_value() == TOKEN
    assert notifications.webhooks[0].url is not None
    assert TOKEN not in repr(loaded.config)
    shown = {e.path: e for e in effective_values(loaded)}
    assert shown["notifications.telegram.token"].value == MASK
    assert shown["notifications.telegram.token"].source.startswith("env (SAPPHIRE_NOTIF")
    assert shown["notifications.webhooks.0.url"].value == MASK


def test_a_bad_secret_value_is_masked_in_the_error() -> None:
    env = {"SAPPHIRE_NOTIFICATIONS__SLACK__URL": "ftp://hooks.example/secret-path-token"}
    with pytest.raises(ConfigError) as refused:
        load_config(environ=env, use_file=False)
    assert "secret-path-token" not in str(refused.value)


def test_mainnet_needs_confirmation_a_key_and_a_proxy_off_loopback(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"set exchange\.confirm_mainnet: true"):
        load_config(environ={"SAPPHIRE_PROFILE": "mainnet"}, use_file=False)
    path = write(
        tmp_path / "c.yaml",
        "profile: mainnet\nexchange: {confirm_mainnet: true}\nservice: {host: 0.0.0.0}\n"
        "risk: {profile: aggressive}\n",
    )
    with pytest.raises(ConfigError) as refused:
        load_config(path, environ={})
    text = str(refused.value)
    assert "exchange.key must name a key" in text
    assert "risk.profile aggressive is refused" in text
    assert "service.host '0.0.0.0' is off the loopback" in text
    good = load_config(
        path,
        environ={"SAPPHIRE_EXCHANGE__KEY": "bybit-main", "SAPPHIRE_RISK__PROFILE": "conservative",
                 "SAPPHIRE_SERVICE__TRUSTED_PROXIES": "10.0.0.5"},
    ).config  # fmt: skip
    assert (good.exchange.env, good.logging.format, good.service.docs) == ("mainnet", "json", False)


def test_testnet_and_development_refuse_mainnet() -> None:
    env = {"SAPPHIRE_PROFILE": "testnet", "SAPPHIRE_EXCHANGE__ENV": "mainnet",
           "SAPPHIRE_EXCHANGE__CONFIRM_MAINNET": "true"}  # fmt: skip
    with pytest.raises(ConfigError, match=r"profile 'testnet' refuses exchange\.env mainnet"):
        load_config(environ=env, use_file=False)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SAPPHIRE_EXCHANGE__URL": ""}, "exchange.env local needs exchange.url"),
        ({"SAPPHIRE_PROFILE": "testnet", "SAPPHIRE_EXCHANGE__URL": "http://x"}, "only for"),
        ({"SAPPHIRE_DATABASE__URL": "mysql://x/y"}, "database URL must start with one of"),
        ({"SAPPHIRE_REDIS__URL": "http://cache"}, "must start with redis://"),
    ],
)
def test_exchange_and_url_rules(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(environ=env, use_file=False)


def test_database_url_file_is_read_when_used(tmp_path: Path) -> None:
    url_file = write(tmp_path / "db.url", "postgresql+psycopg://bob:pw@db/sapphire\n")
    config = load_config(environ={"SAPPHIRE_DATABASE__URL_FILE": str(url_file)}, use_file=False)
    assert config.config.database_url() == "postgresql+psycopg://bob:pw@db/sapphire"
    assert "pw@" not in repr(config.config)


def test_the_configuration_is_frozen() -> None:
    config = load_config(environ={}, use_file=False).config
    with pytest.raises(ValidationError):
        config.service.port = 1
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        SapphireConfig.model_validate({"nope": 1})


def test_the_example_file_is_valid() -> None:
    env = {"SAPPHIRE_NOTIFICATIONS__TELEGRAM__TOKEN": TOKEN,
           "SAPPHIRE_NOTIFICATIONS__WEBHOOKS__OPS__URL": "https://hooks.example/ops",
           "SAPPHIRE_SECRETS_FILE": os.devnull}  # fmt: skip
    loaded = load_config(ROOT / "deploy" / "sapphire.example.yaml", environ=env)
    assert loaded.config.profile == "testnet" and loaded.config.exchange.key == "bybit-testnet"
    assert loaded.config.notifications.telegram is not None


def test_the_docs_hold_the_generated_reference() -> None:
    text = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    start = text.index("### Reference")
    end = text.find("\n## ", start)
    section = text[start:] if end == -1 else text[start : end + 1]
    assert section.rstrip("\n") + "\n" == render_reference(), (
        "docs/operations.md's configuration reference is stale: regenerate it with "
        "sapphire.ops.config_report.render_reference()"
    )

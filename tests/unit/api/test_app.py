"""`ServiceSettings` (defaults, SAPPHIRE_* variables, every bad value named) and
`create_app` (refuses without a secret, mounts the routers, OpenAPI, errors, CORS,
proxies, health and readiness)."""

from __future__ import annotations

import pytest

from sapphire.api.settings import ServiceSettings, SettingsError


def test_settings_defaults_are_safe() -> None:
    s = ServiceSettings.from_environ({})
    assert (s.host, s.port) == ("127.0.0.1", 8000)
    assert s.cors_origins == [] and s.trusted_proxies == []
    assert s.redis_url is None and s.database_url is None
    assert s.max_body_bytes == 1024 * 1024
    assert (s.rate_limit_user, s.rate_limit_ip) == ("120/minute", "120/minute")
    assert (s.rate_limit_login, s.rate_limit_orders) == ("10/minute", "60/minute")


def test_settings_come_from_sapphire_variables_only(tmp_path: object) -> None:
    s = ServiceSettings.from_environ(
        {
            "SAPPHIRE_PORT": "9001",
            "SAPPHIRE_CORS_ORIGINS": "https://dash.example.com, http://localhost:3000/",
            "SAPPHIRE_TRUSTED_PROXIES": '["10.0.0.0/8", "192.168.1.7"]',
            "SAPPHIRE_REDIS_URL": "redis://127.0.0.1:6379/2",
            "SAPPHIRE_RATE_LIMIT_ORDERS": "5/second;100/minute",
            "SAPPHIRE_API_SECRET": "never read into the settings",
            "PORT": "1",
        }
    )
    assert s.port == 9001
    assert s.cors_origins == ["https://dash.example.com", "http://localhost:3000"]
    assert s.trusted_proxies == ["10.0.0.0/8", "192.168.1.7"]
    assert s.redis_url == "redis://127.0.0.1:6379/2"
    assert s.rate_limit_orders == "5/second;100/minute"
    assert "never read" not in repr(s)


def test_settings_read_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAPPHIRE_MAX_BODY_BYTES", "4096")
    assert ServiceSettings.from_environ().max_body_bytes == 4096
    assert ServiceSettings.from_environ({}).max_body_bytes == 1024 * 1024  # a mapping only


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("SAPPHIRE_PORT", "http", "SAPPHIRE_PORT='http': Input should be a valid integer"),
        ("SAPPHIRE_PORT", "70000", "SAPPHIRE_PORT='70000': Input should be less than"),
        ("SAPPHIRE_CORS_ORIGINS", "*", "origin '*' is refused"),
        ("SAPPHIRE_CORS_ORIGINS", "https://*.example.com", "origin 'https://*.example.com'"),
        ("SAPPHIRE_CORS_ORIGINS", "dash.example.com", "'dash.example.com' is not an origin"),
        ("SAPPHIRE_CORS_ORIGINS", "https://a.example/app", "'https://a.example/app' is not an"),
        ("SAPPHIRE_RATE_LIMIT_LOGIN", "lots", "rate limit 'lots' is not in the limits notation"),
        ("SAPPHIRE_RATE_LIMIT_IP", "", "rate limit '' is not in the limits notation"),
        ("SAPPHIRE_REDIS_URL", "http://cache:6379", "Redis URL 'http://cache:6379' must"),
        ("SAPPHIRE_TRUSTED_PROXIES", "10.0.0.1,proxy", "trusted proxy 'proxy' is not an IP"),
        ("SAPPHIRE_MAX_BODY_BYTES", "10", "SAPPHIRE_MAX_BODY_BYTES='10': Input should be"),
        ("SAPPHIRE_HOST", "0.0.0.0/0", "host '0.0.0.0/0' is not an address"),
        ("SAPPHIRE_DOCS", "perhaps", "SAPPHIRE_DOCS='perhaps'"),
    ],
)
def test_a_bad_setting_is_refused_naming_it(variable: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError) as refused:
        ServiceSettings.from_environ({variable: value})
    assert message in str(refused.value)
    assert str(refused.value).startswith(f"bad service settings: {variable}=")


def test_every_bad_setting_is_named_at_once() -> None:
    with pytest.raises(SettingsError) as refused:
        ServiceSettings.from_environ({"SAPPHIRE_PORT": "0", "SAPPHIRE_CORS_ORIGINS": "*"})
    assert "SAPPHIRE_PORT='0'" in str(refused.value)
    assert "SAPPHIRE_CORS_ORIGINS='*'" in str(refused.value)


def test_a_wildcard_origin_is_refused_in_code_too() -> None:
    with pytest.raises(ValueError, match="never a wildcard"):
        ServiceSettings(cors_origins=["*"])


def test_replace_validates_and_names_the_field() -> None:
    s = ServiceSettings.from_environ({}).replace(host="0.0.0.0", port=9002)
    assert (s.host, s.port) == ("0.0.0.0", 9002)
    with pytest.raises(SettingsError, match=r"port=0: Input should be greater than or equal"):
        s.replace(port=0)

"""`ServiceSettings` (defaults, SAPPHIRE_* variables, every bad value named) and
`create_app` (refuses without a secret, mounts the routers, OpenAPI, errors, CORS,
proxies, health and readiness)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient

from sapphire import __version__
from sapphire.api.app import create_app, operations
from sapphire.api.security.secrets import SigningSecretError
from sapphire.api.settings import ServiceSettings, SettingsError
from sapphire.engine.stream import RedisStream
from sapphire.store import downgrade, head_revision

if TYPE_CHECKING:
    from conftest import Api  # the fixtures' harness (tests/unit/api/conftest.py)

#: the signing secret the fixtures use (tests/unit/api/conftest.py)
SECRET_TEXT = "5f0c2a9be3d14f7786a1c0de42b9e8f1" * 2


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


# -- create_app ---------------------------------------------------------------------------------


def test_the_service_refuses_to_start_without_a_signing_secret(tmp_path: Path) -> None:
    with pytest.raises(SigningSecretError) as refused:
        create_app(ServiceSettings(home=tmp_path), environ={})
    message = str(refused.value)
    assert "SAPPHIRE_API_SECRET" in message and "sapphire users create-admin" in message
    with pytest.raises(SigningSecretError, match="has 5 bytes; at least 32"):
        create_app(ServiceSettings(home=tmp_path), environ={"SAPPHIRE_API_SECRET": "short"})


def test_create_app_reads_its_settings_from_the_environment_given(tmp_path: Path) -> None:
    environ = {
        "SAPPHIRE_HOME": str(tmp_path / "home"),
        "SAPPHIRE_API_SECRET": SECRET_TEXT,
        "SAPPHIRE_CORS_ORIGINS": "https://dash.example.com",
        "SAPPHIRE_MAX_BODY_BYTES": "4096",
    }
    app = create_app(environ=environ)
    service = app.state.service
    assert service.home == tmp_path / "home"
    assert service.settings.cors_origins == ["https://dash.example.com"]
    assert service.store.url == f"sqlite:///{tmp_path / 'home' / 'sapphire.db'}"
    with pytest.raises(SettingsError, match="SAPPHIRE_PORT='x'"):
        create_app(environ={**environ, "SAPPHIRE_PORT": "x"})


def test_every_router_is_mounted_under_api_v1(api: Api) -> None:
    paths = set(api.client.get("/openapi.json").json()["paths"])
    assert all(p.startswith("/api/v1/") for p in paths)
    for expected in [
        "/api/v1/health", "/api/v1/ready", "/api/v1/version",  # health
        "/api/v1/auth/login", "/api/v1/users",  # H1
        "/api/v1/audit", "/api/v1/exchange-keys",  # H2
        "/api/v1/nodes", "/api/v1/jobs",  # H4
        "/api/v1/portfolio/positions", "/api/v1/models", "/api/v1/risk/limits", "/api/v1/logs",
    ]:  # fmt: skip
        assert expected in paths, expected
    websockets = [r for r in iter_route_contexts(api.app.routes) if r.path == "/api/v1/ws"]
    assert websockets, "the WebSocket route is mounted too"


def test_the_openapi_is_complete(api: Api) -> None:
    schema = api.client.get("/openapi.json").json()
    info = schema["info"]
    assert info["title"] == "Sapphire API" and info["version"] == __version__
    assert "Bearer" in info["description"] and "X-Sapphire-TOTP" in info["description"]
    assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            where = f"{method.upper()} {path}"
            assert operation.get("summary") or operation.get("description"), where
            assert "429" in operation["responses"], where
            if "422" in operation["responses"]:
                body = operation["responses"]["422"]["content"]["application/json"]
                assert body["schema"] == {"$ref": "#/components/schemas/ErrorDetail"}, where
            request = operation.get("requestBody", {}).get("content", {})
            for media in request.values():  # every request body model shows an example
                refs = [media["schema"], *media["schema"].get("anyOf", [])]
                models = [
                    schema["components"]["schemas"][r["$ref"].rsplit("/", 1)[-1]]
                    for r in refs
                    if "$ref" in r
                ]
                assert models, f"{where}: the body is not a model"
                assert all(m.get("examples") for m in models), f"{where}: no example"


def test_validation_errors_name_the_field_and_value_but_never_a_secret(api: Api) -> None:
    answer = api.client.post(
        "/api/v1/auth/login", json={"username": "alice", "password": 12345, "extra": "x"}
    )
    assert answer.status_code == 422
    detail = answer.json()["detail"]
    assert isinstance(detail, str)
    assert "body.extra: Extra inputs are not permitted (got 'x')" in detail
    assert "body.password: Input should be a valid string" in detail
    assert "12345" not in detail  # a password's value is never echoed
    bad_query = api.client.get(
        "/api/v1/audit", params={"limit": "lots"}, headers=api.users["admin"].headers
    )
    assert bad_query.status_code == 422
    assert "query.limit: Input should be a valid integer" in bad_query.json()["detail"]
    assert "(got 'lots')" in bad_query.json()["detail"]


@pytest.mark.parametrize(
    "evil", ["admin' OR '1'='1", "x'; DROP TABLE users; --", "1 UNION SELECT * FROM users"]
)
def test_sql_looking_input_is_only_text(api: Api, evil: str) -> None:
    login = api.client.post("/api/v1/auth/login", json={"username": evil, "password": evil})
    assert login.status_code == 401
    admin = api.users["admin"].headers
    found = api.client.get("/api/v1/audit", params={"actor": evil}, headers=admin)
    assert found.status_code == 200  # the filter matched the text, as text: the failed login
    assert [r["actor"] for r in found.json()["records"]] == [evil]
    for path in (f"/api/v1/nodes/{evil}", f"/api/v1/models/{evil}/versions"):
        answer = api.client.get(path, headers=admin)
        assert answer.status_code in (404, 422), (path, answer.text)
        assert isinstance(answer.json()["detail"], str)
    users = api.client.get("/api/v1/users", headers=admin)
    assert users.status_code == 200 and len(users.json()) == 3  # nothing dropped or added


def test_an_oversized_body_is_refused_before_the_route_and_the_audit(api: Api) -> None:
    before = len(api.service.audit.records(1000))
    big = {"username": "viewer1", "password": "x" * (1024 * 1024)}
    answer = api.client.post("/api/v1/auth/login", json=big)
    assert answer.status_code == 413
    assert answer.json()["detail"].endswith("limit of 1048576 bytes")
    assert len(api.service.audit.records(1000)) == before


def test_every_answer_carries_a_request_id(api: Api) -> None:
    """Refusals too (413 here): a client's usable id is kept, otherwise one is made."""
    mine = api.client.get("/api/v1/health", headers={"X-Request-ID": "client-42"})
    assert mine.headers["x-request-id"] == "client-42"
    made = api.client.post("/api/v1/auth/login", content=b"x" * (2 * 1024 * 1024))
    assert made.status_code == 413 and len(made.headers["x-request-id"]) >= 16


def test_state_changing_requests_are_audited(api: Api) -> None:
    answer = api.client.post(
        "/api/v1/auth/api-keys",
        json={"name": "script", "scopes": ["read"]},
        headers=api.users["trader"].headers,
    )
    assert answer.status_code in (200, 201), answer.text
    record = api.service.audit.records(1, newest_first=True)[0]
    assert record.actor == "trader1"
    assert record.action == "POST /api/v1/auth/api-keys"
    assert answer.json()["key"] not in str(record.detail)


def test_security_headers_on_the_service_and_hsts_behind_tls(api: Api) -> None:
    plain = api.client.get("/api/v1/health")
    assert plain.headers["x-frame-options"] == "DENY"
    assert plain.headers["cache-control"] == "no-store"
    assert "strict-transport-security" not in plain.headers
    with TestClient(api.app, base_url="https://testserver") as tls:
        assert "max-age" in tls.get("/api/v1/health").headers["strict-transport-security"]
    docs = api.client.get("/docs")
    assert docs.status_code == 200 and "cdn.jsdelivr.net" in docs.headers["content-security-policy"]


def test_cors_allows_only_the_listed_origins(make_api: Any) -> None:
    api = make_api(cors_origins=["https://dash.example.com"])
    preflight = {"Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization,content-type"}  # fmt: skip
    ok = api.client.options(
        "/api/v1/auth/login", headers={"Origin": "https://dash.example.com", **preflight}
    )
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == "https://dash.example.com"
    assert ok.headers["access-control-allow-credentials"] == "true"
    assert "authorization" in ok.headers["access-control-allow-headers"].lower()
    evil = api.client.options(
        "/api/v1/auth/login", headers={"Origin": "https://evil.example", **preflight}
    )
    assert evil.status_code == 400
    assert "access-control-allow-origin" not in evil.headers
    simple = api.client.get("/api/v1/health", headers={"Origin": "https://evil.example"})
    assert simple.status_code == 200 and "access-control-allow-origin" not in simple.headers
    limited = api.client.get("/api/v1/health", headers={"Origin": "https://dash.example.com"})
    assert limited.headers["access-control-allow-origin"] == "https://dash.example.com"
    assert "retry-after" in limited.headers["access-control-expose-headers"].lower()


def test_without_origins_no_browser_origin_is_allowed(api: Api) -> None:
    answer = api.client.get("/api/v1/health", headers={"Origin": "https://dash.example.com"})
    assert "access-control-allow-origin" not in answer.headers
    preflight = api.client.options(
        "/api/v1/health",
        headers={"Origin": "https://dash.example.com", "Access-Control-Request-Method": "GET"},
    )
    assert preflight.status_code == 400


def test_forwarded_headers_count_only_from_trusted_proxies(make_api: Any) -> None:
    spoofed = make_api(rate_limit_ip="2/minute")  # no trusted proxies: the socket's address
    c = TestClient(spoofed.app, client=("198.51.100.1", 1))
    answers = [
        c.get("/api/v1/health", headers={"X-Forwarded-For": f"203.0.113.{n}"}).status_code
        for n in range(3)
    ]
    assert answers == [200, 200, 429]  # forging X-Forwarded-For does not dodge the limit
    proxied = make_api(rate_limit_ip="2/minute", trusted_proxies=["10.0.0.0/8"])
    proxy = TestClient(proxied.app, client=("10.0.0.5", 1))
    forwarded = {"X-Forwarded-For": "203.0.113.1", "X-Forwarded-Proto": "https"}
    first = proxy.get("/api/v1/health", headers=forwarded)
    assert "strict-transport-security" in first.headers  # TLS ended at the proxy
    assert proxy.get("/api/v1/health", headers=forwarded).status_code == 200
    assert proxy.get("/api/v1/health", headers=forwarded).status_code == 429
    other = {"X-Forwarded-For": "203.0.113.2"}
    assert proxy.get("/api/v1/health", headers=other).status_code == 200  # another client


def test_login_is_rate_limited_per_username_on_the_service(make_api: Any) -> None:
    api = make_api(rate_limit_login="3/minute")
    wrong = {"username": "trader1", "password": "not the password at all"}
    answers = [
        TestClient(api.app, client=(f"198.51.100.{n}", 1))
        .post("/api/v1/auth/login", json=wrong)
        .status_code
        for n in range(4)
    ]
    assert answers == [401, 401, 401, 429]


# -- health, readiness, version -----------------------------------------------------------------


def test_health_and_ready_need_no_credentials(api: Api) -> None:
    assert api.client.get("/api/v1/health").json() == {"status": "ok"}
    ready = api.client.get("/api/v1/ready")
    assert ready.status_code == 200
    body = ready.json()
    assert body["ready"] is True and body["detail"] == "ready"
    assert set(body["checks"]) == {"database", "events", "rate_limits"}


def test_ready_names_a_database_behind_the_newest_migration(api: Api) -> None:
    downgrade(api.service.store.url, "0003")
    answer = api.client.get("/api/v1/ready")
    assert answer.status_code == 503
    body = answer.json()
    assert body["detail"] == "not ready: database"
    assert body["checks"]["database"]["detail"].startswith("at schema revision 0003, needs")
    assert body["checks"]["events"]["ok"] is True


def test_ready_names_an_unreachable_event_stream(api: Api) -> None:
    api.service.events = RedisStream("redis://127.0.0.1:1/0")  # nothing listens there
    answer = api.client.get("/api/v1/ready")
    assert answer.status_code == 503
    assert answer.json()["detail"] == "not ready: events"
    assert answer.json()["checks"]["events"] == {"ok": False, "detail": "unreachable"}


def test_version_needs_read(api: Api) -> None:
    assert api.client.get("/api/v1/version").status_code == 401
    answer = api.client.get("/api/v1/version", headers=api.users["viewer"].headers)
    assert answer.status_code == 200
    body = answer.json()
    assert body["version"] == __version__ and body["api"] == "v1"
    assert body["schema_revision"] == head_revision()


def test_the_docs_list_every_operation_with_its_scope(api: Api) -> None:
    docs = (Path(__file__).resolve().parents[3] / "docs" / "api.md").read_text()
    rows = re.findall(r"^\| (GET|POST|PUT|PATCH|DELETE) \| `([^`]+)` \| (\w+) \|", docs, re.M)
    listed = {(method, "/api/v1" + path): scope for method, path, scope in rows}
    served = {
        (op.method, op.path): ",".join(sorted(op.scopes)) or "public"
        for op in operations(api.app)
        if op.in_schema  # not /metrics: Prometheus's, with its own token (docs/operations.md)
    }
    assert listed == served

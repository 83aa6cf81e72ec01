"""Every operation of the service's OpenAPI, proven: each one that is not on the fixed
public list answers 401 without credentials, 401 with forged ones (a token signed with
another key, an unsigned token, an unknown API key), and 403 with a real credential that
lacks the scope its route requires (read from the route's dependencies: `deps.require`
marks them with `required_scope`)."""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

import jwt

from sapphire.api.app import PUBLIC_SCOPE, operations

if TYPE_CHECKING:
    from conftest import Api  # the fixtures' harness (tests/unit/api/conftest.py)

#: the operations anyone may call: liveness, readiness, and the two ways to get a token
PUBLIC = {
    ("GET", "/api/v1/health"),
    ("GET", "/api/v1/ready"),
    ("POST", "/api/v1/auth/login"),
    ("POST", "/api/v1/auth/refresh"),
}


def protected(api: Api) -> list[tuple[str, str, dict[str, Any], frozenset[str]]]:
    """(method, path template, OpenAPI operation, scopes its route requires) of each
    operation in the served OpenAPI."""
    schema = api.client.get("/openapi.json").json()
    scopes = {(op.method, op.path): op.scopes for op in operations(api.app)}
    found = []
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            found.append((method.upper(), path, operation, scopes[(method.upper(), path)]))
    return found


def concrete(path: str, operation: dict[str, Any]) -> str:
    """`path` with each parameter filled by a value of its type."""
    for parameter in operation.get("parameters", []):
        if parameter["in"] != "path":
            continue
        schema = parameter.get("schema", {})
        if "enum" in schema:
            value = str(schema["enum"][0])
        elif schema.get("type") == "integer":
            value = "1"
        else:
            value = "abc1"
        path = path.replace("{" + parameter["name"] + "}", value)
    return path


def forged_tokens(api: Api) -> dict[str, str]:
    """Credentials that must not pass: the admin's token re-signed with another key, the
    same claims unsigned (alg none), and a well-formed API key nobody issued."""
    real = api.users["admin"].access_token
    claims = jwt.decode(real, options={"verify_signature": False})
    header = jwt.get_unverified_header(real)
    other_key = secrets.token_hex(32)
    unsigned = jwt.encode(claims, key=None, algorithm="none")  # type: ignore[arg-type]
    return {
        "other key": jwt.encode(claims, other_key, algorithm=header["alg"]),
        "alg none": unsigned,
        "unknown API key": "sk_" + secrets.token_urlsafe(32),
    }


def lacking(api: Api, scope: str) -> dict[str, str]:
    """A real credential without `scope`: a trade-only API key lacks read, a viewer
    lacks trade, a trader lacks admin."""
    if scope == "read":
        return api.key("trader", ["trade"])
    if scope == "trade":
        return api.users["viewer"].headers
    assert scope == "admin", scope
    return api.users["trader"].headers


def test_the_public_operations_are_exactly_the_fixed_list(api: Api) -> None:
    public = {(m, p) for m, p, _, scopes in protected(api) if not scopes}
    assert public == PUBLIC
    # and every other one names a scope (none is content with any valid credential)
    assert all(PUBLIC_SCOPE not in scopes for _, _, _, scopes in protected(api))


def test_the_openapi_marks_each_protected_operation(api: Api) -> None:
    for method, path, operation, scopes in protected(api):
        if (method, path) in PUBLIC:
            assert operation["security"] == [], (method, path)
        else:
            assert operation["security"] == [{"bearer": []}, {"apiKey": []}], (method, path)
            assert operation["x-required-scope"] == sorted(scopes), (method, path)
            assert {"401", "403"} <= set(operation["responses"]), (method, path)


def test_every_protected_operation_refuses_no_forged_and_too_weak_credentials(api: Api) -> None:
    forged = forged_tokens(api)
    failures = []
    checked = 0
    for method, template, operation, scopes in protected(api):
        if (method, template) in PUBLIC:
            continue
        path = concrete(template, operation)
        attempts: list[tuple[str, dict[str, str], int]] = [("no credentials", {}, 401)]
        attempts += [
            (name, {"Authorization": f"Bearer {token}"}, 401) for name, token in forged.items()
        ]
        attempts += [(f"without {s}", lacking(api, s), 403) for s in scopes - {PUBLIC_SCOPE}]
        for name, headers, expected in attempts:
            answer = api.client.request(method, path, headers=headers)
            checked += 1
            if answer.status_code != expected or "detail" not in answer.json():
                failures.append(
                    f"{method} {path} {name}: {answer.status_code} {answer.text[:120]}"
                    f" (expected {expected})"
                )
    assert not failures, "\n".join(failures)
    assert checked >= 4 * 20  # every router is mounted: dozens of operations were tried


def test_a_refused_credential_is_told_how_to_authenticate(api: Api) -> None:
    answer = api.client.get("/api/v1/auth/me")
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == "Bearer"
    assert answer.json()["detail"].startswith("not authenticated")

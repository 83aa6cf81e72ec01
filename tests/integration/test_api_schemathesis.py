"""schemathesis against the running service: every operation of its OpenAPI, called with
an admin's session and a fresh TOTP code through the app's ASGI interface, with valid and
malformed requests: no server error, malformed input refused with a 4xx, and every
answer's status, content type, headers and body as the schema documents them.

The service is the one the API unit tests build (tests/unit/api/conftest.py: a temporary
SAPPHIRE_HOME, SQLite, a user of each role); a few examples per operation keep the run
under a minute. Nodes or jobs the generated requests start are stopped afterwards.
"""

from __future__ import annotations

import contextlib
import importlib.util
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import HTTPException
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from sapphire.api.security.deps import TOTP_HEADER

pytestmark = pytest.mark.slow

_spec = importlib.util.spec_from_file_location(
    "api_fixtures", Path(__file__).resolve().parents[1] / "unit" / "api" / "conftest.py"
)
assert _spec is not None and _spec.loader is not None
api_fixtures = importlib.util.module_from_spec(_spec)
sys.modules["api_fixtures"] = api_fixtures  # its dataclasses look their module up
_spec.loader.exec_module(api_fixtures)

#: generated cases per operation (the whole run stays under a minute)
EXAMPLES = 6
#: operations that start a node or a job (fuzzed with malformed requests only)
STARTS_WORK = re.compile(r"^POST /api/v1/(nodes|jobs/[a-z]+)$")
#: operations that answer 401 to a wrong password or refresh token (not for lack of one)
LOGINS = {"POST /api/v1/auth/login", "POST /api/v1/auth/refresh"}
CHECKS = [
    not_a_server_error,
    negative_data_rejection,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    monkeypatch = pytest.MonkeyPatch()
    api = api_fixtures.build_api(tmp_path_factory.mktemp("service"), monkeypatch)
    try:
        with api.client:
            yield api
    finally:
        stop_what_was_started(api.service)
        monkeypatch.undo()


def stop_what_was_started(service: Any) -> None:
    """Stop the nodes and cancel the jobs the generated requests started."""
    for node in service.nodes.list_nodes():
        with contextlib.suppress(LookupError, RuntimeError):  # it ended meanwhile
            service.nodes.stop(node.run_id, timeout=10)
    for job in service.jobs.list_jobs():
        if job.status in ("queued", "running"):
            with contextlib.suppress(LookupError, RuntimeError):
                service.jobs.cancel(job.id)


class Admin:
    """An admin's session for the generated calls: its token and a fresh TOTP code on
    every call (so the sensitive operations are reached too). A call may end the session
    (logout, revoking sessions, demoting or disabling the user): the next call then gets
    a new admin, so no operation is left to meet only 401s."""

    def __init__(self, api: Any) -> None:
        self.api = api
        self.made = 0
        self.caller = self._new()

    def _new(self) -> Any:
        self.made += 1
        return self.api.add_user(f"fuzz-admin{self.made}", "admin")

    def headers(self) -> dict[str, str]:
        try:
            principal = self.api.service.auth.principal_from_bearer(self.caller.access_token)
            usable = "admin" in principal.scopes
        except HTTPException:
            usable = False
        if not usable:
            self.caller = self._new()
        return {**self.caller.headers, TOTP_HEADER: self.api.code(self.caller.totp_secret)}


def cases(operation: Any) -> st.SearchStrategy[Any]:
    """Valid and malformed requests for `operation`; only malformed ones for those that
    start a node or a job (a valid one could start a live node or a download that reaches
    an exchange: tests never do; their own tests start them on local data)."""
    malformed = operation.as_strategy(GenerationMode.NEGATIVE)
    if STARTS_WORK.match(f"{operation.method.upper()} {operation.path}"):
        return malformed
    return st.one_of(operation.as_strategy(GenerationMode.POSITIVE), malformed)


def call_and_check(operation: Any, admin: Admin) -> tuple[list[int], str | None]:
    """Run the generated cases of `operation`: the statuses and the first failure."""
    answers: list[int] = []

    @given(case=cases(operation))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: a failure is shown as found
        suppress_health_check=list(HealthCheck),
    )
    def answers_as_documented(case: Any) -> None:
        response = case.call(headers=admin.headers())
        answers.append(response.status_code)
        case.validate_response(response, checks=CHECKS)

    try:
        answers_as_documented()
    except (Exception, BaseExceptionGroup) as exc:  # the failure hypothesis kept (shrunk)
        return answers, str(exc)
    return answers, None


def test_every_operation_answers_as_documented(service: Any) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", service.app)
    admin = Admin(service)
    failures: list[str] = []
    tried = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        where = f"{operation.method.upper()} {operation.path}"
        answers, failure = call_and_check(operation, admin)
        tried += 1
        if failure is not None:
            failures.append(f"{where}: {failure}")
        elif where not in LOGINS and all(a == 401 for a in answers):
            failures.append(f"{where}: only 401s ({len(answers)} calls): nothing was tested")
    assert not failures, "\n\n".join(failures)
    assert tried >= 40  # every router's operations were in the schema

"""Response models every router shares: the error body and the error answers' OpenAPI."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ERROR_ANSWERS", "ErrorDetail", "error_response"]


class ErrorDetail(BaseModel):
    """Every error answer: one message saying what was wrong (naming the bad value)."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"detail": "body.quantity: must be > 0 (got '-1')"}]}
    )

    detail: str = Field(description="What went wrong, naming the bad value.")


#: the error answers the app adds to an operation's OpenAPI where they can happen
ERROR_ANSWERS: dict[int, str] = {
    400: "Malformed request (e.g. a Content-Length that is not a number).",
    401: "No credentials, or an invalid, expired, revoked or forged one.",
    403: "The credential lacks the scope this needs (or a second factor is missing).",
    413: "The request body is larger than the service accepts.",
    422: "A parameter or the body failed validation (the message names it and its value).",
    429: "Over a rate limit; retry after the Retry-After header's seconds.",
    503: "A component the service needs is unreachable (e.g. the rate limits' Redis).",
}


def error_response(status: int, description: str | None = None) -> dict[str, Any]:
    """The OpenAPI response object of an error answer with `ErrorDetail` as its body."""
    answer: dict[str, Any] = {
        "description": description or ERROR_ANSWERS.get(status, "Error."),
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorDetail"}}},
    }
    if status in (429, 503):
        answer["headers"] = {
            "Retry-After": {
                "description": "Seconds to wait before trying again.",
                "schema": {"type": "integer"},
            }
        }
    return answer

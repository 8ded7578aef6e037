"""API errors: every failure reaches the client as `{"error": {"code": ..., "message": ...}}` with its status.

Handlers turn our ApiError, Starlette's HTTP errors, request validation errors and anything unexpected
into that one shape; an unexpected error is logged here and never shows its traceback to the client.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)

HTTP_CODES = {400: "bad_request", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed",
              406: "not_acceptable", 413: "too_large", 415: "unsupported_media_type", 429: "busy",
              503: "unavailable"}


class ErrorDetail(BaseModel):
    """What went wrong: a stable machine-readable code and a one-line message for people."""

    code: str
    message: str


class ErrorBody(BaseModel):
    """The body of every error response."""

    error: ErrorDetail


class ApiError(Exception):
    """An error answered to the client with this status, code and message."""

    def __init__(self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


def error_response(status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    """The JSON error response."""
    body = {"error": {"code": code, "message": message}}
    return JSONResponse(body, status_code=status, headers=dict(headers or {}))


def validation_message(errors: list[Any]) -> str:
    """The first validation error as 'where: what' (query or form field names only, no input echoed)."""
    if not errors:
        return "invalid request"
    first = errors[0]
    where = ".".join(str(part) for part in first.get("loc", ()) if part not in ("query", "body", "path"))
    return f"{where}: {first.get('msg', 'invalid value')}" if where else str(first.get("msg", "invalid value"))


def invalid_parameter(exc: ValidationError) -> ApiError:
    """A 422 ApiError for parameters that failed their model's validation."""
    return ApiError(422, "invalid_parameter", validation_message(exc.errors()))


def install_error_handlers(app: FastAPI) -> None:
    """Make every error response of the app the JSON error shape."""

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = HTTP_CODES.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def request_invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, "invalid_parameter", validation_message(list(exc.errors())))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
        return error_response(500, "internal_error", "internal server error (logged on the server)")


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in {
        400: "bad input: not an image or a video, truncated or corrupt file, malformed upload",
        401: "missing or wrong bearer token",
        408: "the request body did not arrive within the upload timeout",
        413: "upload too large, too many pixels, or video too long",
        422: "invalid parameter",
        429: "too many requests or jobs in progress; retry later",
    }.items()
}

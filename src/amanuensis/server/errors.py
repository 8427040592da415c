"""Every error becomes one JSON shape, OpenAI's: {"error": {"message", "type", "param", "code"}}."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import AmanuensisError, default_param, error_json

log = logging.getLogger(__name__)

class ApiError(Exception):
    """An HTTP-level failure with the fields of the JSON error body."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.headers = headers or {}


class UploadTooLargeError(ApiError):
    """The upload is larger than the configured limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            413, f"the upload exceeds the limit of {limit} bytes ({limit / 1048576:.1f} MiB)",
            code="upload_too_large", param="file",
        )


class QueueFullError(ApiError):
    """Too many requests are already waiting."""

    def __init__(self, depth: int, retry_after: int) -> None:
        super().__init__(
            503, f"the server is busy ({depth} requests waiting); retry in {retry_after} s",
            code="queue_full", headers={"Retry-After": str(retry_after)},
        )


class RequestTimeoutError(ApiError):
    """The request did not finish within the configured time."""

    def __init__(self, seconds: float, where: str) -> None:
        super().__init__(
            504, f"the request did not finish within {seconds:g} s ({where})", code="request_timeout"
        )


def from_domain(exc: AmanuensisError) -> ApiError:
    """Map a package error (with http_status and code) to an ApiError, naming its parameter."""
    return ApiError(exc.http_status, str(exc), code=exc.code, param=default_param(exc))


def error_body(error: ApiError) -> dict:
    """The JSON body for `error`."""
    return {"error": error_json(error.status, error.message, error.code, error.param)}


def error_response(error: ApiError) -> JSONResponse:
    """A JSONResponse carrying `error`."""
    return JSONResponse(error_body(error), status_code=error.status, headers=error.headers)


def install_error_handlers(app: FastAPI) -> None:
    """Route every exception type through error_response; nothing leaves as HTML or a bare 500."""

    @app.exception_handler(ApiError)
    async def _api(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(AmanuensisError)
    async def _domain(request: Request, exc: AmanuensisError) -> JSONResponse:
        return error_response(from_domain(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404:
            message = f"no route {request.method} {request.url.path}"
        error = ApiError(exc.status_code, message, code=code, headers=dict(exc.headers or {}))
        return error_response(error)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        location = [str(part) for part in first.get("loc", ()) if part not in ("body", "query", "path")]
        param = location[-1] if location else None
        message = f"{param}: {first.get('msg', 'invalid value')}" if param else "invalid request"
        return error_response(ApiError(400, message, code="invalid_parameter", param=param))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(ApiError(500, f"internal error: {type(exc).__name__}", code="internal_error"))


__all__ = [
    "ApiError",
    "QueueFullError",
    "RequestTimeoutError",
    "UploadTooLargeError",
    "error_body",
    "error_response",
    "from_domain",
    "install_error_handlers",
]

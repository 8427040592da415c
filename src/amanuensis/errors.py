"""Error types. Each maps once to an HTTP status in the server and to exit code 2 in the CLI; error_json
is the one `{message, type, param, code}` shape that HTTP answers, job records and events carry."""

from __future__ import annotations

from typing import Any


class AmanuensisError(Exception):
    """Base class for every error this package raises on purpose."""

    http_status = 400
    code = "invalid_request"


class AudioError(AmanuensisError):
    """The input could not be decoded as audio, or holds none."""

    http_status = 400
    code = "invalid_audio"


class AudioTooLongError(AudioError):
    """The audio is longer than the configured maximum."""

    http_status = 413
    code = "audio_too_long"

    def __init__(self, seconds: float, limit: float) -> None:
        super().__init__(f"the audio lasts {seconds:.0f} s; this server accepts at most {limit:g} s")
        self.seconds = seconds
        self.limit = limit


def check_duration(seconds: float, limit: float) -> None:
    """Raise AudioTooLongError when `seconds` of audio exceed `limit`."""
    if seconds > limit:
        raise AudioTooLongError(seconds, limit)


class ModelError(AmanuensisError):
    """A model name could not be resolved or loaded."""

    http_status = 400
    code = "model_not_found"


class ModelConflictError(ModelError):
    """A model cannot be loaded or unloaded now: the `--max-models` limit is reached (model_limit), it is
    in use (model_in_use), or it is the server's default (model_pinned)."""

    http_status = 409

    def __init__(self, message: str, code: str = "model_limit") -> None:
        super().__init__(message)
        self.code = code


class ModelMemoryError(ModelError):
    """Loading a model would pass the memory limit or the memory the host has left."""

    http_status = 507
    code = "insufficient_memory"


class OptionsError(AmanuensisError):
    """A transcription option has a value that cannot be honoured."""

    http_status = 400
    code = "invalid_parameter"

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class BackendError(AmanuensisError):
    """A feature front-end backend failed (start-up or call)."""

    http_status = 503
    code = "backend_failed"


class DiarizationUnavailableError(AmanuensisError):
    """Diarization was asked for but its optional dependencies are not installed."""

    http_status = 400
    code = "diarization_unavailable"


class JobCancelled(Exception):
    """Raised inside a running transcription (from its progress or segment callback) when the request or
    job it serves was cancelled, timed out or lost its client: the work stops at the next chunk."""


_TYPES = {401: "authentication_error", 403: "permission_error", 404: "not_found_error"}


def error_type(status: int) -> str:
    """OpenAI's error `type` for an HTTP status."""
    if status in _TYPES:
        return _TYPES[status]
    return "server_error" if status >= 500 else "invalid_request_error"


def default_param(exc: AmanuensisError) -> str | None:
    """The request field an error is about: its own `param`, else the field its type implies."""
    param = getattr(exc, "param", None)
    if param is None:
        if isinstance(exc, ModelError):
            return "model"
        if isinstance(exc, AudioError):
            return "file"
        if isinstance(exc, DiarizationUnavailableError):
            return "enable_diarization"
    return param


def error_json(status: int, message: str, code: str, param: str | None = None) -> dict[str, Any]:
    """The `{message, type, param, code}` object of every error answer, record and event."""
    return {"message": message, "type": error_type(status), "param": param, "code": code}


def error_of(exc: BaseException) -> dict[str, Any]:
    """error_json for any exception (an unexpected one is a 500 `internal_error`)."""
    if isinstance(exc, AmanuensisError):
        return error_json(exc.http_status, str(exc), exc.code, default_param(exc))
    return error_json(500, f"internal error: {type(exc).__name__}: {exc}", "internal_error")

"""Error types. Each maps once to an HTTP status in the server and to exit code 2 in the CLI."""


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


class ModelError(AmanuensisError):
    """A model name could not be resolved or loaded."""

    http_status = 400
    code = "model_not_found"


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

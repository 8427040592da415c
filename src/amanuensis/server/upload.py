"""Read a multipart upload as it streams in: the file part goes straight to a temp file on disk,
the byte count is checked on every chunk, and the temp file is removed by whoever owns the Upload."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from ..errors import AudioError
from ..options import MAX_KNOWN_SPEAKERS, MAX_REFERENCE_BYTES
from .errors import ApiError, UploadTooLargeError

log = logging.getLogger(__name__)

FILE_FIELD = "file"
UPLOAD_PREFIX = "amanuensis-upload-"
MAX_FIELD_BYTES = 64 * 1024
REFERENCE_FIELDS = ("known_speakers", "known_speaker_references")
"""Fields that carry a known speaker's reference clip as a data URL (with or without [])."""
MAX_REFERENCE_FIELD_BYTES = MAX_REFERENCE_BYTES * 4 // 3 + 1024
MAX_FIELDS = 64
FORM_OVERHEAD = 1024 * 1024 + MAX_KNOWN_SPEAKERS * MAX_REFERENCE_FIELD_BYTES
DRAIN_LIMIT = 32 * 1024 * 1024
"""After a 413 the rest of a body up to this size is read and dropped so the client sees the answer."""


@dataclass
class Upload:
    """The form fields (every value, in order) and the uploaded file on disk."""

    fields: dict[str, list[str]] = field(default_factory=dict)
    path: Path | None = None
    filename: str | None = None
    size: int = 0

    def cleanup(self) -> None:
        """Remove the temp file (idempotent)."""
        if self.path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
            self.path = None


class _Parts:
    """python-multipart callbacks: fields into memory (small), the file into a temp file."""

    def __init__(self, upload: Upload, limit: int, tmp_dir: Path | None) -> None:
        self.upload = upload
        self.limit = limit
        self.tmp_dir = tmp_dir
        self.header_name = b""
        self.header_value = b""
        self.disposition = b""
        self.name = ""
        self.data = bytearray()
        self.handle: object | None = None
        self.too_large = False
        self.field_count = 0

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self.on_part_begin,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
        }

    def on_part_begin(self) -> None:
        self.disposition, self.name, self.data, self.handle = b"", "", bytearray(), None

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self.header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self.header_value += data[start:end]

    def on_header_end(self) -> None:
        if self.header_name.lower() == b"content-disposition":
            self.disposition = self.header_value
        self.header_name, self.header_value = b"", b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self.disposition)
        if b"name" not in options:
            raise ApiError(400, "a multipart part has no field name", code="invalid_multipart")
        self.name = options[b"name"].decode("utf-8", "replace")
        if b"filename" not in options and self.name != FILE_FIELD:
            self.field_count += 1
            if self.field_count > MAX_FIELDS:
                raise ApiError(400, f"too many form fields (at most {MAX_FIELDS})", code="invalid_multipart")
            return
        if self.name != FILE_FIELD:
            raise ApiError(400, f"unexpected file in field {self.name!r}; send the audio as 'file'",
                           code="unknown_parameter", param=self.name)
        if self.upload.path is not None:
            raise ApiError(400, "send exactly one 'file'", code="invalid_parameter", param=FILE_FIELD)
        filename = options.get(b"filename", b"").decode("utf-8", "replace")
        self.upload.filename = filename or None
        fd, path = tempfile.mkstemp(prefix=UPLOAD_PREFIX, suffix=_suffix(filename), dir=self.tmp_dir)
        self.upload.path = Path(path)
        self.handle = os.fdopen(fd, "wb")

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self.handle is None:
            limit = MAX_REFERENCE_FIELD_BYTES if self.name.removesuffix("[]") in REFERENCE_FIELDS else MAX_FIELD_BYTES
            if len(self.data) + (end - start) > limit:
                raise ApiError(400, f"form field {self.name!r} is longer than {limit} bytes",
                               code="invalid_parameter", param=self.name)
            self.data += data[start:end]
            return
        self.upload.size += end - start
        if self.upload.size > self.limit:
            self.too_large = True
            raise UploadTooLargeError(self.limit)
        self.handle.write(data[start:end])

    def on_part_end(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None
            return
        self.upload.fields.setdefault(self.name, []).append(self.data.decode("utf-8", "replace"))

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None


def _suffix(filename: str) -> str:
    match = re.search(r"\.([A-Za-z0-9]{1,8})$", filename or "")
    return f".{match.group(1).lower()}" if match else ""


async def _drain(request: Request, limit: int) -> None:
    """Read and drop the rest of the body (bounded) so the 413 reaches a client that is still sending."""
    dropped = 0
    with contextlib.suppress(Exception):
        async for chunk in request.stream():
            dropped += len(chunk)
            if dropped > limit:
                return


async def read_upload(request: Request, limit: int, tmp_dir: Path | None = None) -> Upload:
    """Parse a multipart/form-data request; raises ApiError (400/413). The caller must cleanup()."""
    content_type = request.headers.get("content-type", "")
    kind, params = parse_options_header(content_type)
    if kind != b"multipart/form-data" or b"boundary" not in params:
        raise ApiError(400, "send the audio as multipart/form-data with a 'file' field "
                       f"(got content type {content_type or 'none'!r})", code="invalid_content_type",
                       param=FILE_FIELD)
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit + FORM_OVERHEAD:
        if int(declared) <= limit + DRAIN_LIMIT:
            await _drain(request, DRAIN_LIMIT + limit)
        raise UploadTooLargeError(limit)
    upload = Upload()
    parts = _Parts(upload, limit, tmp_dir)
    parser = MultipartParser(params[b"boundary"], parts.callbacks())
    try:
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
    except UploadTooLargeError:
        parts.close()
        upload.cleanup()
        await _drain(request, DRAIN_LIMIT)
        raise
    except FormParserError as exc:
        parts.close()
        upload.cleanup()
        raise ApiError(400, f"malformed multipart body ({exc})", code="invalid_multipart") from exc
    except BaseException:
        parts.close()
        upload.cleanup()
        raise
    parts.close()
    return upload


def require_audio(upload: Upload) -> None:
    """Raise a 400 naming `file` when the upload has no file part, or an AudioError when it is empty."""
    if upload.path is None:
        raise ApiError(400, "no audio: send it as the multipart field 'file'", code="missing_file", param=FILE_FIELD)
    if upload.size == 0:
        raise AudioError("the uploaded file is empty (0 bytes)")

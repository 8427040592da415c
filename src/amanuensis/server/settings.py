"""Server settings: environment variables (AMANUENSIS_*) overridden by command-line flags."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from ..pipeline import COMPUTE_TYPES, DEVICES, default_cpu_threads

DEFAULT_PORT = 9004


class ServerSettings(BaseSettings):
    """Everything `amanuensis serve` can be told; each field is also AMANUENSIS_<FIELD>."""

    model_config = SettingsConfigDict(env_prefix="AMANUENSIS_", extra="ignore", validate_default=True)

    host: str = "127.0.0.1"
    port: int = Field(DEFAULT_PORT, ge=0, le=65535)
    model: str = "tiny.en"
    device: str = "auto"
    compute_type: str = "auto"
    workers: int = Field(1, ge=1, le=64, description="model replicas, each running up to max_concurrent requests")
    cpu_threads: int = Field(0, ge=0, description="CTranslate2 threads per worker; 0 = cores / workers")
    batch_size: int = Field(8, ge=1, le=64, description="30 s chunks of one request decoded together per step")
    max_concurrent: int = Field(8, ge=1, le=64, description="requests transcribed at once per worker, "
                                "their chunks batched together (with batch_wait_ms > 0)")
    batch_wait_ms: float = Field(50.0, ge=0, le=1000, description="how long a chunk waits for other requests' "
                                 "chunks to share its engine batch; 0 turns cross-request batching off")
    max_queue: int = Field(32, ge=0, description="requests allowed to wait for a worker; past it, 503")
    max_models: int = Field(2, ge=1, description="models held in memory at once, the default included")
    model_ttl: float = Field(300.0, ge=0, description="seconds a model other than the default may sit idle "
                             "before it is unloaded; 0 = kept until unloaded or displaced")
    max_model_memory_mb: float = Field(0.0, ge=0, description="memory the models held may take together "
                                       "(their measured size); past it a load is refused with 507; 0 = no limit "
                                       "but the host's available memory")
    allow_download: bool = Field(False, description="download faster-whisper hub models that are not cached")
    max_upload_mb: float = Field(200.0, gt=0)
    max_audio_seconds: float = Field(7200.0, gt=0)
    request_timeout: float = Field(600.0, gt=0, description="seconds from arrival to answer, queue included")
    header_timeout: float = Field(10.0, gt=0, le=600, description="seconds a client may take to send a "
                                  "request's headers; past it, 408 and the connection is closed")
    api_keys: Annotated[list[str], NoDecode] = Field(default_factory=list)
    public_docs: bool = Field(False, description="with API keys set, serve /docs, /redoc and /openapi.json "
                              "without a key")
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    tmp_dir: Path | None = None
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["text", "json"] = "text"
    access_log: bool = True
    shutdown_timeout: float = Field(30.0, ge=0)
    data_dir: Path | None = Field(None, description="jobs database and job audio (default: the user's data dir)")
    job_retention_hours: float = Field(168.0, gt=0, description="finished jobs and their audio are kept this long")
    callback_secret: str | None = Field(None, description="key of the jobs' callback signatures (default: "
                                        "generated once into <data_dir>/callback-secret)")
    allow_private_callbacks: bool = Field(False, description="let jobs call back loopback, private and "
                                          "link-local addresses")
    ray_address: str | None = Field(None, description="serve on Ray Serve: auto, ray://host:10001, host:6379, "
                                    "or empty for a local Ray started on the spot; unset = no Ray")
    ray_min_replicas: int | None = Field(None, ge=0, le=1024, description="with Ray: autoscaling lower bound")
    ray_max_replicas: int | None = Field(None, ge=1, le=1024, description="with Ray: autoscaling upper bound "
                                         "(unset: a fixed `workers` model replicas)")
    max_realtime_sessions: int = Field(8, ge=0, le=256, description="WebSocket realtime sessions open at once")
    realtime_idle_timeout: float = Field(60.0, gt=0, description="seconds a realtime socket may send nothing")
    realtime_send_timeout: float = Field(10.0, gt=0, le=600, description="seconds a realtime client may take no "
                                         "event while events are owed to it before it is closed")
    realtime_workers: int = Field(2, ge=0, le=64, description="model copies for realtime sessions, loaded at the "
                                  "first session, sharing the cores; 0 = sessions decode on the workers' copies")

    @field_validator("api_keys", "cors_origins", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("device", "compute_type")
    @classmethod
    def _engine_choice(cls, value: str, info: ValidationInfo) -> str:
        allowed = DEVICES if info.field_name == "device" else COMPUTE_TYPES
        if value not in allowed:
            raise ValueError(f"{info.field_name} must be one of {', '.join(allowed)}, not {value!r}")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @property
    def max_upload_bytes(self) -> int:
        """The upload limit in bytes."""
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def cross_request_batching(self) -> bool:
        """True when concurrent requests share engine batches."""
        return self.batch_wait_ms > 0

    def slots(self) -> int:
        """Transcriptions run at once: `max_concurrent` per worker with cross-request batching, else one."""
        return self.workers * (self.max_concurrent if self.cross_request_batching else 1)

    def threads_per_worker(self) -> int:
        """CTranslate2 intra-op threads for each worker's model replica (0: the cores shared by the workers)."""
        return self.cpu_threads or default_cpu_threads(self.workers)

    def threads_per_realtime_worker(self) -> int:
        """CTranslate2 intra-op threads for each realtime model copy: the cores shared by those copies."""
        return default_cpu_threads(max(1, self.realtime_workers))


# flag -> (field, argparse keyword arguments); the help text doubles as the README table's meaning.
_FLAGS: dict[str, tuple[str, dict]] = {
    "--host": ("host", {"help": "address to listen on (default 127.0.0.1)"}),
    "--port": ("port", {"type": int, "help": f"port to listen on (default {DEFAULT_PORT})"}),
    "--model": ("model", {"help": "model loaded at start-up (default tiny.en, embedded)"}),
    "--device": ("device", {"choices": list(DEVICES), "help": "where the model runs (default auto)"}),
    "--compute-type": ("compute_type", {"choices": list(COMPUTE_TYPES), "help": "CTranslate2 compute type "
                                        "(default auto: int8 on CPU, float16 on GPU)"}),
    "--workers": ("workers", {"type": int, "help": "model copies, each serving --max-concurrent requests (default 1)"}),
    "--cpu-threads": ("cpu_threads", {"type": int, "help": "threads per worker (default cores / workers)"}),
    "--batch-size": ("batch_size", {"type": int, "help": "chunks decoded together per step (default 8)"}),
    "--max-concurrent": ("max_concurrent", {"type": int, "help": "requests transcribed at once per worker, "
                                            "sharing its batches (default 8)"}),
    "--batch-wait-ms": ("batch_wait_ms", {"type": float, "help": "wait for other requests' chunks to batch "
                                          "with (default 50; 0 = off)"}),
    "--max-queue": ("max_queue", {"type": int, "help": "requests that may wait for a worker (default 32)"}),
    "--max-models": ("max_models", {"type": int, "help": "models held in memory at once (default 2)"}),
    "--model-ttl": ("model_ttl", {"type": float, "help": "unload a model other than the default after this "
                                  "many idle seconds (default 300; 0 = never)"}),
    "--max-model-memory-mb": ("max_model_memory_mb", {"type": float, "help": "memory the loaded models may "
                                                      "take together, in MiB (default 0: the host's available)"}),
    "--max-upload-mb": ("max_upload_mb", {"type": float, "help": "upload size limit in MiB (default 200)"}),
    "--max-audio-seconds": ("max_audio_seconds", {"type": float, "help": "audio length limit (default 7200)"}),
    "--request-timeout": ("request_timeout", {"type": float, "help": "seconds per request (default 600)"}),
    "--header-timeout": ("header_timeout", {"type": float, "help": "seconds a client may take to send a "
                                            "request's headers, then 408 and a close (default 10)"}),
    "--api-key": ("api_keys", {"action": "append", "help": "accepted Bearer key (repeat for several)"}),
    "--cors-origin": ("cors_origins", {"action": "append", "help": "allowed CORS origin (repeatable)"}),
    "--tmp-dir": ("tmp_dir", {"help": "where uploads are spooled (default: system temp)"}),
    "--shutdown-timeout": ("shutdown_timeout", {"type": float, "help": "seconds to finish requests on stop (30)"}),
    "--log-level": ("log_level", {"choices": ["debug", "info", "warning", "error"]}),
    "--log-format": ("log_format", {"choices": ["text", "json"], "help": "text or json lines"}),
    "--data-dir": ("data_dir", {"help": "jobs database and job audio (default: ~/.local/share/amanuensis)"}),
    "--job-retention-hours": ("job_retention_hours", {"type": float, "help": "keep finished jobs (default 168)"}),
    "--callback-secret": ("callback_secret", {"help": "key that signs job callbacks (default: generated into "
                                              "DATA_DIR/callback-secret)"}),
    "--ray-min-replicas": ("ray_min_replicas", {"type": int, "help": "with --ray: fewest model replicas when "
                                                "autoscaling (default 1)"}),
    "--ray-max-replicas": ("ray_max_replicas", {"type": int, "help": "with --ray: most model replicas; set to "
                                                "autoscale (default: a fixed --workers replicas)"}),
    "--max-realtime-sessions": ("max_realtime_sessions", {"type": int, "help": "realtime WebSocket sessions "
                                                          "open at once (default 8; 0 = none)"}),
    "--realtime-workers": ("realtime_workers", {"type": int, "help": "model copies for realtime sessions, "
                                                "loaded at the first session, sharing the cores (default 2; 0 = "
                                                "sessions decode on the --workers copies)"}),
    "--realtime-idle-timeout": ("realtime_idle_timeout", {"type": float, "help": "close a realtime socket "
                                                          "that sends nothing this many seconds (default 60)"}),
    "--realtime-send-timeout": ("realtime_send_timeout", {"type": float, "help": "close a realtime client that "
                                                          "takes no event this many seconds while events are "
                                                          "owed to it (default 10)"}),
}


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """Add every `serve` flag to `parser`; unset flags fall back to AMANUENSIS_* variables."""
    for flag, (field, kwargs) in _FLAGS.items():
        metavar = {} if "choices" in kwargs else {"metavar": flag.removeprefix("--").upper().replace("-", "_")}
        parser.add_argument(flag, dest=f"serve_{field}", default=None, **metavar, **kwargs)
    parser.add_argument(
        "--ray", dest="serve_ray_address", nargs="?", const="", default=None, metavar="ADDRESS",
        help="serve on Ray Serve (models as replicas across the cluster): auto, ray://host:10001, or none "
        "for a local Ray started now; --workers is then the number of model replicas",
    )
    parser.add_argument(
        "--public-docs", dest="serve_public_docs", action="store_const", const=True, default=None,
        help="with --api-key: serve /docs, /redoc and /openapi.json without a key",
    )
    parser.add_argument(
        "--allow-download", dest="serve_allow_download", action="store_const", const=True, default=None,
        help="download faster-whisper hub models that are not cached (default: offline)",
    )
    parser.add_argument(
        "--allow-private-callbacks", dest="serve_allow_private_callbacks", action="store_const", const=True,
        default=None, help="let jobs' callback_url point at loopback, private and link-local addresses",
    )
    parser.add_argument(
        "--no-access-log", dest="serve_access_log", action="store_const", const=False, default=None,
        help="do not log one line per request",
    )


def settings_from_args(args: argparse.Namespace) -> ServerSettings:
    """Build ServerSettings from parsed flags (given flags win over the environment)."""
    given = {
        key.removeprefix("serve_"): value
        for key, value in vars(args).items()
        if key.startswith("serve_") and value is not None
    }
    if getattr(args, "verbose", False) and "log_level" not in given:
        given["log_level"] = "debug"
    return ServerSettings(**given)

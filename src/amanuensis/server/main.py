"""Start the server under uvicorn: `serve(settings)`, and the glue for `amanuensis serve` flags."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

import uvicorn
from pydantic import ValidationError

from ..errors import ModelError, OptionsError
from ..models import resolve_model
from ..pipeline import cpu_layout
from .app import create_app
from .header_deadline import header_deadline_protocol
from .logs import configure_logging
from .memory import limit_malloc_arenas
from .realtime.protocol import MAX_MESSAGE_BYTES
from .realtime.transport import websocket_protocol
from .settings import ServerSettings, add_serve_arguments, settings_from_args

log = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    """uvicorn's server, but on SIGTERM/SIGINT the realtime sessions finish their open turns (each sends
    its `.completed`, then closes with 1001) before uvicorn closes every socket with 1012."""

    def __init__(self, config: uvicorn.Config, finish: object, timeout_s: float) -> None:
        super().__init__(config)
        self._finish, self._timeout_s = finish, timeout_s

    async def shutdown(self, sockets: list | None = None) -> None:
        left = await self._finish(self._timeout_s)
        if left:
            log.warning("%d realtime sessions still open at shutdown", left)
        await super().shutdown(sockets)


def serve(settings: ServerSettings | None = None) -> int:
    """Run the server until SIGINT/SIGTERM; returns 0 after a clean stop, 2 for an unknown model or a
    bad AMANUENSIS_DECODERS, 1 when start-up failed otherwise."""
    settings = settings or ServerSettings()
    configure_logging(settings.log_level, settings.log_format)
    try:
        resolve_model(settings.model, settings.allow_download)  # a wrong name fails here in one line
        cpu_layout(settings.threads_per_worker(), settings.device)  # and so does AMANUENSIS_DECODERS
    except (ModelError, OptionsError) as exc:
        log.error("cannot start: %s", exc)
        return 2
    if settings.ray_address is not None:
        from .ray_serve import serve_on_ray

        return serve_on_ray(settings)
    limit_malloc_arenas()  # before the models' threads start: unloaded models' memory can then go back
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        lifespan="on",
        http=header_deadline_protocol(settings.header_timeout),
        timeout_graceful_shutdown=int(settings.shutdown_timeout),
        server_header=False,
        ws=websocket_protocol(settings.realtime_send_timeout),
        ws_max_size=MAX_MESSAGE_BYTES,
    )
    server = _Server(config, app.state.realtime.finish, settings.shutdown_timeout)
    log.info("starting", extra={"host": settings.host, "port": settings.port, "model": settings.model})
    server.run()
    return 0 if server.started else 1


def serve_from_args(args: argparse.Namespace) -> int:
    """Run `serve` with the flags added by add_serve_arguments (exit code 2 on bad settings)."""
    try:
        settings = settings_from_args(args)
    except ValidationError as exc:
        configure_logging()
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"]) or "settings"
            log.error("invalid setting %s: %s", field, error["msg"])
        return 2
    return serve(settings)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m amanuensis.server [flags]`: the same as `amanuensis serve`."""
    parser = argparse.ArgumentParser(prog="python -m amanuensis.server", description="Run the Amanuensis server.")
    add_serve_arguments(parser)
    return serve_from_args(parser.parse_args(argv))

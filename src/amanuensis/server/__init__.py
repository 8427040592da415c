"""The HTTP server: FastAPI app, OpenAI-compatible routes, queue, metrics, and uvicorn start-up.

`amanuensis serve` wires `add_serve_arguments(parser)` and `serve_from_args(args)`; code can call
`serve(ServerSettings(...))` or mount `create_app(settings)` itself.
"""

from .app import create_app
from .main import main, serve, serve_from_args
from .settings import ServerSettings, add_serve_arguments, settings_from_args

__all__ = [
    "ServerSettings",
    "add_serve_arguments",
    "create_app",
    "main",
    "serve",
    "serve_from_args",
    "settings_from_args",
]

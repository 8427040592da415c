"""Realtime transcription over WebSocket, speaking OpenAI's Realtime protocol (intent=transcription)."""

from .routes import router
from .sessions import RealtimeSessions

__all__ = ["RealtimeSessions", "router"]

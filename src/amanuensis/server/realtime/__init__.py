"""Realtime transcription over WebSocket, speaking OpenAI's Realtime protocol (intent=transcription)."""

from .registry import SessionRegistry
from .routes import router

__all__ = ["SessionRegistry", "router"]

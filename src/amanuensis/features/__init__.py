"""Whisper's log-mel front end: the contract (`spec`), backends, the fallback chain and an adapter."""

from .chain import FrontendChain, default_chain
from .spec import reference_log_mel

__all__ = ["FrontendChain", "default_chain", "reference_log_mel"]

"""Whisper's log-mel front end: the contract (`spec`), backends and the fallback chain."""

from .chain import FrontendChain, default_chain
from .spec import reference_log_mel

__all__ = ["FrontendChain", "default_chain", "reference_log_mel"]

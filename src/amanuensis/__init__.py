"""Amanuensis: a self-hosted speech-to-text server on Whisper and CTranslate2."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("amanuensis")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+src"

__all__ = ["__version__"]

"""Benchmarks that run a peer and us side by side in one process: `amanuensis bench`, a development
tool whose third-party needs come with the `bench` extra (`pip install 'amanuensis[bench]'`)."""

from __future__ import annotations

import importlib.util

from ..errors import AmanuensisError

INSTALL_HINT = "pip install 'amanuensis[bench]'"

REQUIRED_MODULES = ("jiwer", "whisper_normalizer")
"""What every bench may import beyond the core install (WER scoring); the peers of `bench frontend` are
optional on top: a missing one is skipped with a warning."""


class BenchUnavailableError(AmanuensisError):
    """`amanuensis bench` was run without the bench extra's packages."""

    code = "bench_unavailable"


def require_extra() -> None:
    """Raise BenchUnavailableError naming the missing modules and the install line, before any bench runs."""
    missing = [name for name in REQUIRED_MODULES if not _installed(name)]
    if missing:
        raise BenchUnavailableError(f"amanuensis bench needs {', '.join(missing)}, not installed: {INSTALL_HINT}")


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # ValueError: a module set to None in sys.modules
        return False

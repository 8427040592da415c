"""The process's memory as the kernel sees it, and giving freed memory back to it.

An unloaded CTranslate2 model frees its weights when its last reference goes, but glibc keeps freed
blocks in its per-thread arenas; `release_freed_memory` collects reference cycles and trims every arena
so the resident size really falls. With glibc's default of up to 8 arenas per core, the blocks a
model's worker threads leave behind stay scattered over many arenas (on 2 cores, a base model loaded,
used and unloaded left about 75 MB resident); two arenas keep that under 20 MB.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import os

log = logging.getLogger(__name__)

_M_ARENA_MAX = -8
DEFAULT_ARENAS = 2


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None


_LIBC = _libc()


def _status_kib(path: str, key: str) -> int | None:
    try:
        with open(path, encoding="ascii") as handle:
            for line in handle:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def process_rss_bytes(pid: int | str = "self") -> int | None:
    """Resident memory of a process (VmRSS), or None where /proc is not available."""
    kib = _status_kib(f"/proc/{pid}/status", "VmRSS")
    return None if kib is None else kib * 1024


def available_bytes() -> int | None:
    """Memory the host can still give without swapping (MemAvailable), or None where unknown."""
    kib = _status_kib("/proc/meminfo", "MemAvailable")
    return None if kib is None else kib * 1024


def limit_malloc_arenas(arenas: int = DEFAULT_ARENAS) -> bool:
    """Cap glibc's malloc arenas (call before the models' threads start); the MALLOC_ARENA_MAX
    environment variable, when set, wins. True when the cap was applied."""
    if _LIBC is None or os.environ.get("MALLOC_ARENA_MAX") or arenas <= 0:
        return False
    return bool(_LIBC.mallopt(_M_ARENA_MAX, arenas))


def release_freed_memory() -> None:
    """Collect reference cycles (a model's objects hold each other) and hand freed heap back to the
    kernel."""
    gc.collect()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)

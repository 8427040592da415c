"""What corpus runs and the server share to use Ray: the import with its install line, the one error
type, and joining a cluster or starting a local Ray, with any failure said in one line."""

from __future__ import annotations

from typing import Any

from .errors import AmanuensisError

LOCAL_OBJECT_STORE_BYTES = 200 * 1024 * 1024
"""Object store of a Ray started on the spot: small, so a laptop or CI box keeps its memory."""


class RayUnavailableError(AmanuensisError):
    """--ray was asked for but Ray is not installed, or the cluster cannot be reached or used."""

    code = "ray_unavailable"


def import_ray(what: str = "Ray") -> Any:
    """The ray module, or RayUnavailableError saying `what` is missing and how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise RayUnavailableError(f"--ray needs {what}, which is not installed: pip install 'amanuensis[ray]'") from exc
    return ray


def connect(ray: Any, address: str | None, *, num_cpus: int, **options: Any) -> None:
    """Join the cluster at `address`, or start a local Ray with `num_cpus` when it is None; raises
    RayUnavailableError with the first line of Ray's own reason."""
    try:
        if address is None:
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=False,
                     object_store_memory=LOCAL_OBJECT_STORE_BYTES, configure_logging=False, **options)
        else:
            ray.init(address=address, configure_logging=False, **options)
    except Exception as exc:  # noqa: BLE001 - Ray raises plain Exception when a node cannot start
        where = f"reach the Ray cluster at {address}" if address else "start a local Ray"
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise RayUnavailableError(f"cannot {where}: {first_line}") from exc

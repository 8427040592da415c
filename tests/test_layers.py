"""The package's layers (ARCHITECTURE.md): nothing below a door imports one, and jobs never import the
server or the command line."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "amanuensis"
DOORS = ("server", "cli", "jobs")
LOWER = ("asr", "features", "diarize", "audio", "models", "formats", "transcript", "errors", "constants",
         "options", "pipeline", "evaluation", "ray_support")


def imported(path: Path) -> set[str]:
    """The amanuensis sub-packages and modules a file imports (relative imports resolved)."""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(parts[: len(parts) - node.level])
                target = base + (node.module.split(".") if node.module else [])
            else:
                target = (node.module or "").split(".")
            if target[:1] == ["amanuensis"] and len(target) > 1:
                found.add(target[1])
                if not node.module or node.level and len(target) == len(base):
                    found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                names = alias.name.split(".")
                if names[0] == "amanuensis" and len(names) > 1:
                    found.add(names[1])
    return found


def files_of(top: str) -> list[Path]:
    directory = PACKAGE / top
    return sorted(directory.rglob("*.py")) if directory.is_dir() else [PACKAGE / f"{top}.py"]


def test_no_lower_layer_imports_a_door():
    for top in LOWER:
        for path in files_of(top):
            doors = imported(path) & set(DOORS)
            assert not doors, f"{path.relative_to(PACKAGE)} imports the door(s) {sorted(doors)}"


def test_jobs_never_import_the_server_or_the_command_line():
    for path in files_of("jobs"):
        assert not imported(path) & {"server", "cli"}, path.relative_to(PACKAGE)


def test_the_check_sees_imports():
    """The walker resolves relative imports (so the tests above can fail)."""
    assert "server" in imported(PACKAGE / "cli" / "__init__.py")  # from ..server import …
    assert {"options", "formats", "errors"} <= imported(PACKAGE / "server" / "params.py")
    assert {"constants", "asr"} <= imported(PACKAGE / "asr" / "engine.py")  # from ..constants, from .decoding

"""tools/heldout.py, the held-out set's downloader, lives outside the installed package and still loads:
its command line answers and its manifest pins every clip (nothing is downloaded here)."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "tools" / "heldout.py"


@pytest.fixture(scope="module")
def heldout():
    spec = importlib.util.spec_from_file_location("heldout_tool", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the script loads
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


def test_the_downloader_is_not_part_of_the_package():
    assert importlib.util.find_spec("amanuensis.bench.heldout") is None


def test_every_clip_is_pinned_once(heldout):
    clips = heldout.MANIFEST
    assert len(clips) >= 10
    paths = [clip.relative_path for clip in clips]
    assert len(set(paths)) == len(paths)
    for clip in clips:
        assert re.fullmatch(r"[0-9a-f]{64}", clip.sha256) and re.fullmatch(r"[0-9a-f]{64}", clip.package.sha256)
        assert clip.package.registry in ("pypi", "deb") and clip.text.strip()


def test_help_answers_without_a_download(heldout, capsys):
    with pytest.raises(SystemExit) as exit_:
        heldout.main(["--help"])
    assert exit_.value.code == 0
    assert "python tools/heldout.py" in capsys.readouterr().out

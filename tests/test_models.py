"""The model registry: embedded default, local directories, packaged base model, hub names offline."""

from __future__ import annotations

import json
import shutil

import pytest

from amanuensis import models
from amanuensis.errors import ModelError


def test_default_is_the_embedded_tiny_en():
    info = models.resolve_model(None)
    assert info.name == "tiny.en" and info.source == "embedded"
    assert not info.multilingual and info.languages == ["en"] and info.n_mels == 80
    assert models.is_model_dir(models.embedded_model_path())
    assert models.resolve_model("whisper-1").path == info.path


def test_local_directory(tmp_path):
    target = tmp_path / "my-model"
    shutil.copytree(models.embedded_model_path(), target)
    info = models.resolve_model(str(target))
    assert info.source == "local" and info.name == "my-model" and not info.multilingual


def test_directory_without_a_model_is_refused(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelError, match="not a CTranslate2 Whisper model directory"):
        models.resolve_model(str(tmp_path))


def test_unknown_name():
    with pytest.raises(ModelError, match="unknown model 'no-such-model'"):
        models.resolve_model("no-such-model")


def test_hub_names_fail_clearly_offline(monkeypatch, tmp_path):
    monkeypatch.delenv("AMANUENSIS_ALLOW_DOWNLOAD", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError, match="not available offline"):
        models.resolve_model("small")


def test_download_attempts_report_the_failure(monkeypatch, tmp_path):
    monkeypatch.setenv("AMANUENSIS_ALLOW_DOWNLOAD", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the hub client refuses at once: no traffic leaves
    with pytest.raises(ModelError, match="could not be downloaded"):
        models.resolve_model("large-v3")


@pytest.mark.skipif(not models.base_parts_installed(), reason="pip install 'amanuensis[base]'")
def test_base_model_is_assembled_once_with_verified_size(isolated_cache):
    info = models.resolve_model("base")
    assert info.multilingual and info.source == "packaged" and "de" in info.languages
    model_bin = isolated_cache / "models" / "base" / "model.bin"
    first_mtime = model_bin.stat().st_mtime_ns
    assert models.resolve_model("base").path == info.path
    assert model_bin.stat().st_mtime_ns == first_mtime  # not assembled twice
    # a damaged (short) assembly is detected and rebuilt
    with open(model_bin, "r+b") as handle:
        handle.truncate(1000)
    models.resolve_model("base")
    assert model_bin.stat().st_size > 100_000_000
    assert json.loads((isolated_cache / "models" / "base" / "config.json").read_text())["lang_ids"]


def test_list_models_names_what_each_is(isolated_cache):
    listed = {m.name: m for m in models.list_models()}
    assert listed["tiny.en"].source == "embedded" and listed["tiny.en"].size_bytes > 10_000_000
    if models.base_parts_installed():
        assert listed["base"].multilingual


def test_a_model_directory_in_the_cache_is_listed_and_resolved_by_its_name(isolated_cache):
    target = isolated_cache / "models" / "my-model"
    shutil.copytree(models.embedded_model_path(), target)
    assert "my-model" in {m.name for m in models.list_models()}
    info = models.resolve_model("my-model")
    assert info.source == "local" and info.path == str(target)


def test_cached_hub_models_are_listed_without_a_download(isolated_cache, monkeypatch):
    target = isolated_cache / "hub-small"
    shutil.copytree(models.embedded_model_path(), target)
    monkeypatch.setattr(models, "hub_cached", lambda name: target if name == "small.en" else None)
    listed = {m.name: m for m in models.list_models()}
    assert listed["small.en"].source == "hub" and listed["small.en"].path == str(target)
    assert "medium" not in listed

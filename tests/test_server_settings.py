"""Server settings: AMANUENSIS_* variables, flags over variables, validation."""

from __future__ import annotations

import argparse

import pytest
from pydantic import ValidationError

from amanuensis.server import ServerSettings, add_serve_arguments, settings_from_args


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    return parser.parse_args(argv)


def test_defaults(monkeypatch):
    for name in ("AMANUENSIS_PORT", "AMANUENSIS_HOST", "AMANUENSIS_MODEL", "AMANUENSIS_API_KEYS"):
        monkeypatch.delenv(name, raising=False)
    settings = ServerSettings()
    assert (settings.host, settings.port, settings.model, settings.workers) == ("127.0.0.1", 9004, "tiny.en", 1)
    assert settings.api_keys == [] and settings.max_upload_bytes == 200 * 1024 * 1024


def test_environment_lists_and_numbers(monkeypatch):
    monkeypatch.setenv("AMANUENSIS_API_KEYS", "k1, k2,,")
    monkeypatch.setenv("AMANUENSIS_CORS_ORIGINS", "https://a.example")
    monkeypatch.setenv("AMANUENSIS_MAX_UPLOAD_MB", "0.5")
    monkeypatch.setenv("AMANUENSIS_LOG_LEVEL", "WARNING")
    monkeypatch.setenv("AMANUENSIS_ACCESS_LOG", "false")
    settings = ServerSettings()
    assert settings.api_keys == ["k1", "k2"] and settings.cors_origins == ["https://a.example"]
    assert settings.max_upload_bytes == 512 * 1024 and settings.log_level == "warning"
    assert settings.access_log is False


def test_flags_win_over_environment(monkeypatch):
    monkeypatch.setenv("AMANUENSIS_PORT", "9100")
    monkeypatch.setenv("AMANUENSIS_WORKERS", "3")
    settings = settings_from_args(_parse("--port", "9200", "--api-key", "a", "--api-key", "b", "--no-access-log"))
    assert settings.port == 9200 and settings.workers == 3
    assert settings.api_keys == ["a", "b"] and settings.access_log is False


def test_verbose_flag_of_the_cli_means_debug(monkeypatch):
    monkeypatch.delenv("AMANUENSIS_LOG_LEVEL", raising=False)
    args = _parse()
    args.verbose = True
    assert settings_from_args(args).log_level == "debug"


def test_threads_are_split_between_workers():
    assert ServerSettings(workers=2, cpu_threads=0).threads_per_worker() >= 1
    assert ServerSettings(workers=2, cpu_threads=3).threads_per_worker() == 3


@pytest.mark.parametrize("field", [{"workers": 0}, {"port": 70000}, {"max_upload_mb": 0}, {"log_format": "xml"},
                                   {"header_timeout": 0}])
def test_invalid_values_are_refused(field):
    with pytest.raises(ValidationError):
        ServerSettings(**field)

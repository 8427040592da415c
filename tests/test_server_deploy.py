"""deploy/: the start script runs the real server from an environment file and stops cleanly on SIGTERM;
the systemd unit is valid."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import httpx
import pytest

from .server_fixtures import ROOT, free_port

pytestmark = pytest.mark.slow

SCRIPT = ROOT / "deploy" / "amanuensis-serve.sh"
UNIT = ROOT / "deploy" / "amanuensis.service"


def _environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMANUENSIS_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))
    env.update(extra)
    return env


def test_start_script_serves_and_stops_on_sigterm(tmp_path):
    port = free_port()
    env_file = tmp_path / "amanuensis.env"
    env_file.write_text(
        f"AMANUENSIS_PORT={port}\nAMANUENSIS_TMP_DIR={tmp_path / 'uploads'}\n"
        f"AMANUENSIS_DATA_DIR={tmp_path / 'data'}\nAMANUENSIS_LOG_FORMAT=json\n"
    )
    env = _environment(AMANUENSIS_PYTHON=sys.executable, AMANUENSIS_ENV_FILE=str(env_file))
    log_path = tmp_path / "server.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen([str(SCRIPT), "--workers", "1"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, log_path.read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.2)
        assert httpx.get(f"http://127.0.0.1:{port}/status").json()["queue"]["workers"] == 1
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=60)
    # uvicorn finishes shutting down, then re-raises the signal: death by SIGTERM, which systemd counts
    # as a clean stop.
    assert code in (0, -signal.SIGTERM), log_path.read_text()
    assert "Application shutdown complete" in log_path.read_text()
    assert '"msg": "stopped"' in log_path.read_text()


def test_start_script_without_a_usable_python(tmp_path):
    env = _environment(AMANUENSIS_PYTHON=str(tmp_path / "no-python"), AMANUENSIS_ENV_FILE=str(tmp_path / "none"))
    result = subprocess.run([str(SCRIPT)], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "AMANUENSIS_VENV" in result.stderr


def test_bad_setting_exits_2(tmp_path):
    env = _environment(AMANUENSIS_PYTHON=sys.executable, AMANUENSIS_ENV_FILE=str(tmp_path / "none"),
                       AMANUENSIS_WORKERS="0")
    result = subprocess.run([str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "workers" in result.stderr


def test_unknown_model_exits_2_in_one_line(tmp_path):
    env = _environment(AMANUENSIS_PYTHON=sys.executable, AMANUENSIS_ENV_FILE=str(tmp_path / "none"))
    result = subprocess.run([str(SCRIPT), "--model", "whisper-galactic"], env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2 and "unknown model 'whisper-galactic'" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_decoder_count_exits_2_in_one_line(tmp_path):
    env = _environment(AMANUENSIS_PYTHON=sys.executable, AMANUENSIS_ENV_FILE=str(tmp_path / "none"),
                       AMANUENSIS_DECODERS="two")
    result = subprocess.run([str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "AMANUENSIS_DECODERS must be a whole number" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_unit_verifies(tmp_path):
    unit = tmp_path / "amanuensis.service"
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/amanuensis-serve", str(SCRIPT)))
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_systemd_unit_runs_the_start_script():
    text = UNIT.read_text()
    assert "ExecStart=/usr/local/bin/amanuensis-serve\n" in text
    assert "install -m 0755 deploy/amanuensis-serve.sh /usr/local/bin/amanuensis-serve" in text
    assert "KillSignal=SIGTERM" in text and "PrivateTmp=true" in text

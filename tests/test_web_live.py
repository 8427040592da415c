"""The web page's Live mode in a real browser: Debian's Chromium through Playwright, with a fake
microphone that plays a WAV file (--use-file-for-fake-audio-capture). Words appear before the clip
has finished playing, then each turn's final text; the API key goes in the browser subprotocol."""

from __future__ import annotations

import time

import numpy as np
import pytest

from amanuensis.audio import decode_audio
from amanuensis.evaluation import read_references, word_error_rate

from .server_fixtures import DATA, RunningServer, run_server, write_wav
from .test_web import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, enter_key

KEY = "live-page-key"
CLIP = DATA / "TTS" / "LJ001-0001.wav"  # 9.7 s
CLIP_S = 9.7

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium"),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> RunningServer:
    workdir = tmp_path_factory.mktemp("web-live-server")
    with run_server(workdir, "--api-key", KEY) as running:
        yield running


@pytest.fixture(scope="module")
def microphone(tmp_path_factory):
    """The clip after 1 s of silence and before 4 s of it (Chromium loops the file)."""
    silence = np.zeros(16000, dtype=np.float32)
    audio = np.concatenate([silence, decode_audio(CLIP), silence, silence, silence, silence])
    return write_wav(tmp_path_factory.mktemp("mic") / "mic.wav", audio)


@pytest.fixture()
def page(server, microphone):
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the browser test needs the Python package playwright (never `playwright install`)")
    args = [*CHROMIUM_ARGS, "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={microphone}"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=args, headless=True)
        context = browser.new_context(viewport={"width": 1280, "height": 900}, permissions=["microphone"])
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(server.url + "/")
        enter_key(page, KEY)
        yield page
        context.close()
        browser.close()
        assert not errors, errors


def test_live_words_appear_before_the_clip_ends(page):
    page.evaluate(f"""() => {{ const key = document.getElementById('api-key'); key.value = '{KEY}';
                     key.dispatchEvent(new Event('change')); }}""")
    started = time.monotonic()
    page.click("#live-button")
    page.wait_for_selector("#live-transcript .delta", timeout=60_000)
    first_word = time.monotonic() - started
    assert first_word < 1.0 + CLIP_S, first_word  # the clip starts 1 s in and lasts 9.7 s
    page.wait_for_selector("#live-transcript .turn.final", timeout=90_000)
    page.wait_for_function("!document.querySelector('#live-transcript .turn.open')", timeout=90_000)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "web-live.png"), full_page=True)
    page.click("#live-button")
    page.wait_for_function("document.getElementById('live-button').getAttribute('aria-pressed') === 'false'",
                           timeout=30_000)
    finals = page.locator("#live-transcript .turn.final").all_inner_texts()
    reference = read_references(DATA / "transcripts.tsv")[str(CLIP.resolve())]
    first_pass: list[str] = []  # the fake microphone loops the file: score the turns of its first pass
    for text in finals:
        if len(" ".join(first_pass).split()) >= len(reference.split()) - 2:
            break
        first_pass.append(text)
    assert word_error_rate([reference], [" ".join(first_pass)]) <= 0.25, finals
    assert "Stopped" in page.inner_text("#live-status") or "Listening" in page.inner_text("#live-status")

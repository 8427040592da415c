"""The web page in a real browser: Playwright driving Debian's headless Chromium (/usr/bin/chromium; no browser
is ever downloaded). Upload a clip, wait for the transcript, click a word to seek, download the SRT."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from .diar_conversation import four_speaker_conversation
from .server_fixtures import JFK, ROOT, RunningServer, run_server, words, write_wav

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "artifacts"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--autoplay-policy=no-user-gesture-required"]
SRT_TIME = re.compile(r"^(\d\d):(\d\d):(\d\d),(\d\d\d) --> (\d\d):(\d\d):(\d\d),(\d\d\d)$")
JFK_WORDS = set(words("And so my fellow Americans, ask not what your country can do for you, "
                      "ask what you can do for your country."))

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium "
                                                      "(apt-get install -y chromium)"),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> RunningServer:
    workdir = tmp_path_factory.mktemp("web-server")
    with run_server(workdir, "--data-dir", str(workdir / "data"), "--batch-size", "1") as running:
        yield running


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the browser test needs the Python package playwright (pip install playwright); "
                    "never run `playwright install`: it drives /usr/bin/chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture()
def page(browser, server):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("requestfailed", lambda request: errors.append(f"request failed: {request.url}"))
    page.goto(server.url + "/")
    yield page
    context.close()
    assert not errors, errors


def wait_finished(page, timeout_ms: int = 180_000) -> None:
    """Wait until the job shown is finished, and fail with the page's error unless it is done."""
    page.wait_for_selector("#job-status.done, #job-status.failed, #job-status.cancelled", timeout=timeout_ms)
    status = page.text_content("#job-status")
    assert status == "done", f"job {status}: {page.inner_text('#form-error')}"


def parse_srt(text: str) -> list[tuple[float, float, str]]:
    """(start, end, text) per cue; raises AssertionError on anything that is not SubRip."""
    cues = []
    for number, block in enumerate(text.strip().split("\n\n"), start=1):
        lines = block.split("\n")
        assert lines[0] == str(number), block
        match = SRT_TIME.match(lines[1])
        assert match, block
        h1, m1, s1, ms1, h2, m2, s2, ms2 = map(int, match.groups())
        start, end = h1 * 3600 + m1 * 60 + s1 + ms1 / 1000, h2 * 3600 + m2 * 60 + s2 + ms2 / 1000
        assert end > start and len(lines) >= 3, block
        cues.append((start, end, " ".join(lines[2:])))
    assert [c[0] for c in cues] == sorted(c[0] for c in cues)
    return cues


def test_upload_transcribe_seek_download(page, server, tmp_path):
    assert page.locator("#submit-button").is_disabled()
    page.set_input_files("#file-input", str(JFK))
    assert "jfk.flac" in page.inner_text("#file-name")
    page.wait_for_function("document.querySelector('#model option[value=\"tiny.en\"]') !== null")
    page.select_option("#language", "en")
    page.click("#submit-button")

    wait_finished(page)
    transcript = page.inner_text("#transcript")
    assert set(words(transcript)) >= JFK_WORDS, transcript
    assert page.inner_text("#progress-text").endswith("100%")
    assert page.locator("#waveform").bounding_box()["height"] > 50

    page.wait_for_function("document.getElementById('player').readyState >= 1")
    word = page.locator(".word", has_text="country").first
    start = float(word.get_attribute("data-start"))
    assert start > 1.0
    word.click()
    position = page.evaluate("document.getElementById('player').currentTime")
    assert position == pytest.approx(start, abs=0.05)
    assert page.locator(".word.current").first.inner_text().strip() == "country"

    with page.expect_download() as download:
        page.click("button.download[data-format='srt']")
    assert download.value.suggested_filename == "jfk.srt"
    cues = parse_srt(Path(download.value.path()).read_text(encoding="utf-8"))
    assert set(words(" ".join(c[2] for c in cues))) >= JFK_WORDS

    # the subtitle style fields shape the download: 20 characters a line, each word underlined as said
    page.click("#subtitle-style summary")
    page.fill("#max-line-width", "20")
    page.check("#highlight-words")
    with page.expect_download() as download:
        page.click("button.download[data-format='vtt']")
    vtt = Path(download.value.path()).read_text(encoding="utf-8")
    texts = [line for block in vtt.strip().split("\n\n")[1:] for line in block.split("\n")[1:]]
    assert texts and all(len(re.sub(r"</?u>", "", line)) <= 20 for line in texts), vtt
    assert sum("<u>" in line for line in texts) >= len(JFK_WORDS), vtt

    ARTIFACTS.mkdir(exist_ok=True)
    page.locator(".word", has_text="fellow").first.click()  # a highlighted word in the screenshot
    page.screenshot(path=str(ARTIFACTS / "web-page.png"), full_page=True)

    # the job is a real one: the API shows it done with the same words
    jobs = httpx.get(f"{server.url}/v1/jobs", timeout=30).json()["data"]
    assert jobs[0]["status"] == "done" and jobs[0]["filename"] == "jfk.flac"


def test_controls_are_labelled_and_keyboard_reachable(page):
    unlabelled = page.evaluate(
        """[...document.querySelectorAll('input, select, textarea')]
             .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute('aria-label'))
             .map((el) => el.id || el.name)"""
    )
    assert unlabelled == []
    reached = []
    for _ in range(12):
        page.keyboard.press("Tab")
        reached.append(page.evaluate("document.activeElement.id || document.activeElement.tagName"))
    assert "file-input" in reached and "model" in reached and "language" in reached, reached
    assert page.evaluate("document.querySelectorAll('script[src^=\"http\"], link[href^=\"http\"]').length") == 0


def test_diarized_transcript_has_speaker_colours(page, tmp_path):
    conversation = four_speaker_conversation()  # real clips of four speakers, ~40 s
    clip = write_wav(tmp_path / "conversation.wav", conversation.samples)
    page.set_input_files("#file-input", str(clip))
    page.check("#diarize")
    page.click("#submit-button")
    wait_finished(page)
    chips = page.locator(".speaker-chip")
    assert chips.count() >= 2, page.inner_text("#transcript")
    colours = {chips.nth(i).evaluate("el => getComputedStyle(el).backgroundColor") for i in range(chips.count())}
    assert len(colours) == chips.count()
    labels = page.locator(".segment .speaker").all_inner_texts()
    assert len(set(labels)) >= 2 and set(labels) <= set(chips.all_inner_texts())
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "web-page-diarized.png"), full_page=True)


def test_transcript_appears_segment_by_segment_with_live_progress(page, tmp_path):
    from .test_jobs import jfk_repeated

    clip = jfk_repeated(tmp_path / "jfk-x8.wav", 8)
    page.evaluate(
        """() => {
            window.seen = [];
            new MutationObserver(() => window.seen.push({
                segments: document.querySelectorAll('#transcript .segment').length,
                status: document.getElementById('job-status').textContent,
                percent: document.getElementById('job-progress').value,
            })).observe(document.getElementById('transcript'), {childList: true});
        }"""
    )
    page.set_input_files("#file-input", str(clip))
    page.click("#submit-button")
    wait_finished(page)
    seen = page.evaluate("window.seen")
    live = [s for s in seen if s["status"] == "running" and s["segments"] > 0]
    assert live, seen  # segments were shown while the job still ran
    assert 0 < live[0]["percent"] < 100 or len({s["segments"] for s in live}) > 1, seen
    assert page.locator("#transcript .segment").count() >= 4


PAGE_KEY = "page-key;1"  # a character a cookie cannot hold bare


def enter_key(page, key: str) -> None:
    """Answer the key form a server with API keys shows in place of the page, and wait for the page."""
    page.fill("#key", key)
    page.click("#key-form button[type=submit]")
    page.wait_for_selector("#job-form", timeout=30_000)


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory) -> RunningServer:
    workdir = tmp_path_factory.mktemp("web-keyed-server")
    with run_server(workdir, "--api-key", PAGE_KEY, "--batch-size", "1") as running:
        yield running


def test_with_a_key_the_page_asks_for_it_then_works(browser, keyed_server):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("requestfailed", lambda request: errors.append(f"request failed: {request.url}"))
    first = page.goto(keyed_server.url + "/")
    assert first.status == 401 and page.locator("#job-form").count() == 0
    assert httpx.get(f"{keyed_server.url}/static/app.js").status_code == 401
    page.fill("#key", "wrong")
    page.click("#key-form button[type=submit]")
    page.wait_for_function("document.getElementById('key-error').textContent === 'Wrong key.'")

    enter_key(page, PAGE_KEY)  # then the page's API calls and live mode send it
    page.wait_for_function(f"document.getElementById('api-key').value === {PAGE_KEY!r}")
    page.wait_for_function("document.querySelector('#model option[value=\"tiny.en\"]') !== null")
    page.set_input_files("#file-input", str(JFK))
    page.click("#submit-button")
    wait_finished(page)
    assert set(words(page.inner_text("#transcript"))) >= JFK_WORDS
    assert page.request.get(keyed_server.url + "/openapi.json").status == 200  # the cookie opens the docs
    assert page.request.get(keyed_server.url + "/v1/models").status == 401  # but not the API
    context.close()
    assert not errors, errors


def test_the_api_docs_render_with_the_internet_cut_off(browser, server):
    """/docs (Swagger UI) and /redoc come up with every request outside the server refused. Only images
    may be asked for outside (ReDoc's footer logo, which it hides when it cannot load)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    outside: list[str] = []
    errors: list[str] = []

    def only_the_server(route) -> None:
        if route.request.url.startswith(server.url):
            route.continue_()
        else:
            outside.append(f"{route.request.resource_type} {route.request.url}")
            route.abort()

    page.route("**/*", only_the_server)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(server.url + "/docs")
    page.wait_for_selector(".swagger-ui .info .title", timeout=30_000)
    assert "Amanuensis" in page.text_content(".swagger-ui .info .title")
    page.wait_for_selector(".opblock-summary-path[data-path='/v1/audio/transcriptions']", timeout=30_000)
    page.goto(server.url + "/redoc")
    page.wait_for_selector("h1:has-text('Amanuensis')", timeout=30_000)
    context.close()
    assert all(request.startswith("image ") for request in outside) and not errors, (outside, errors)

"""The web page in a real browser (headless Chromium driven by Playwright) against a server
running tiny models: each tab used as a person would, and a bad upload shown as a message.

Needs Debian's Chromium (`apt-get install chromium chromium-driver`); without it these tests
say so and skip."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from seq2seq.serving.app import create_app
from tests.test_caption_recipe import draw
from tests.test_serving import LIMITS, png, run_dirs, served  # noqa: F401 (run_dirs is a fixture)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium here: apt-get install chromium chromium-driver")
#: How a headless Chromium starts as root on a machine without a network.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server_url(run_dirs: dict[str, Path]) -> Iterator[str]:  # noqa: F811
    port = free_port()
    config = uvicorn.Config(create_app(served(run_dirs), LIMITS), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the server did not start"
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: object, server_url: str, tmp_path: Path) -> Iterator[object]:
    context = browser.new_context(viewport={"width": 1000, "height": 800})  # type: ignore[attr-defined]
    page = context.new_page()
    page.goto(server_url + "/")
    page.wait_for_selector("select[data-task=translate] option", state="attached")
    yield page
    context.close()


def test_translate_tab_shows_translations_and_the_alignment(page: object) -> None:
    page.fill("#translate-form textarea", "ein mann sieht der hund .\nder ball rot mag ein kind .")  # type: ignore[attr-defined]
    page.fill("#translate-form input[name=n_best]", "2")  # type: ignore[attr-defined]
    page.click("#translate-form button[type=submit]")  # type: ignore[attr-defined]
    page.wait_for_selector("#translations li")  # type: ignore[attr-defined]
    items = page.locator("#translations > li")  # type: ignore[attr-defined]
    assert items.count() == 2 and items.first.inner_text().strip()
    assert items.first.locator(".other").count() == 1  # the second best
    assert page.is_visible("#alignment-canvas")  # type: ignore[attr-defined]
    assert page.is_hidden("#message")  # type: ignore[attr-defined]


def test_caption_tab_captions_an_image_and_shows_each_word_attention(page: object, tmp_path: Path) -> None:
    image = tmp_path / "red_circle.png"
    image.write_bytes(png(draw("red", "circle")))
    page.click("#tab-caption")  # type: ignore[attr-defined]
    page.set_input_files("#caption-form input[type=file]", str(image))  # type: ignore[attr-defined]
    page.click("#caption-form button[type=submit]")  # type: ignore[attr-defined]
    page.wait_for_function("document.querySelector('#caption-text').textContent.length > 0")  # type: ignore[attr-defined]
    page.wait_for_selector("#words span")  # type: ignore[attr-defined]
    words = page.locator("#words span")  # type: ignore[attr-defined]
    words.last.click()
    assert "chosen" in (words.last.get_attribute("class") or "")


def test_a_bad_upload_is_shown_as_a_message(page: object, tmp_path: Path) -> None:
    bad = tmp_path / "holiday.png"
    bad.write_text("this is not a picture", encoding="utf-8")
    page.click("#tab-caption")  # type: ignore[attr-defined]
    page.set_input_files("#caption-form input[type=file]", str(bad))  # type: ignore[attr-defined]
    page.click("#caption-form button[type=submit]")  # type: ignore[attr-defined]
    page.wait_for_selector("#message:not([hidden])")  # type: ignore[attr-defined]
    message = page.inner_text("#message")  # type: ignore[attr-defined]
    assert "holiday.png" in message and "not an image" in message


def test_generate_tab_streams_text(page: object) -> None:
    page.click("#tab-generate")  # type: ignore[attr-defined]
    page.fill("#generate-form textarea", "ROMEO:")  # type: ignore[attr-defined]
    page.fill("#generate-form input[name=length]", "40")  # type: ignore[attr-defined]
    page.click("#generate-form button[type=submit]")  # type: ignore[attr-defined]
    page.wait_for_function("document.querySelector('#generated').textContent.length > 'ROMEO:'.length")  # type: ignore[attr-defined]
    page.wait_for_selector("#generate-form button[type=submit]:not([disabled])")  # type: ignore[attr-defined]
    assert page.inner_text("#generated").startswith("ROMEO:")  # type: ignore[attr-defined]
    assert page.is_hidden("#message")  # type: ignore[attr-defined]

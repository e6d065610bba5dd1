"""Takes the web page's screenshots in this folder: ``seq2seq serve`` with trained models, each
tab used once in headless Chromium (Debian's ``chromium``, driven by Playwright).

  python docs/screenshots.py --translate runs/multi30k_de_en --caption runs/emoji_scratch \\
      --textgen runs/shakespeare_char --image data/emoji/images/<some emoji>.png
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from playwright.sync_api import Page, sync_playwright

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip


def start_server(args: argparse.Namespace) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    models = [f"--translate=de_en={args.translate}", f"--caption=emoji={args.caption}"]
    models.append(f"--textgen=shakespeare={args.textgen}")
    command = [sys.executable, "-m", "seq2seq", "serve", *models, "--port", str(port)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return server, url
        except httpx.TransportError:
            time.sleep(0.2)
    server.kill()
    raise RuntimeError("the server did not start")


def translate_tab(page: Page, output: Path) -> None:
    page.fill("#translate-form textarea", "Ein Mann fährt Fahrrad.\nZwei Hunde spielen im Schnee.")
    page.fill("#translate-form input[name=n_best]", "2")
    page.click("#translate-form button[type=submit]")
    page.wait_for_selector("#alignment:not([hidden])")
    page.screenshot(path=str(output / "serve_translate.png"), full_page=True)


def caption_tab(page: Page, image: Path, output: Path) -> None:
    page.click("#tab-caption")
    page.set_input_files("#caption-form input[type=file]", str(image))
    page.click("#caption-form button[type=submit]")
    page.wait_for_selector("#words span")
    page.locator("#words span").nth(1).click()
    page.screenshot(path=str(output / "serve_caption.png"), full_page=True)


def generate_tab(page: Page, output: Path) -> None:
    page.click("#tab-generate")
    page.fill("#generate-form textarea", "ROMEO:")
    page.click("#generate-form button[type=submit]")
    page.wait_for_selector("#generate-form button[type=submit]:not([disabled])", timeout=60_000)
    page.screenshot(path=str(output / "serve_generate.png"), full_page=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--translate", required=True)
    parser.add_argument("--caption", required=True)
    parser.add_argument("--textgen", required=True)
    parser.add_argument("--image", required=True, help="the image to caption")
    parser.add_argument("--output", default=str(Path(__file__).parent), help="where the PNG files go")
    args = parser.parse_args()
    chromium = shutil.which("chromium")
    if chromium is None:
        sys.exit("no Chromium here: apt-get install chromium chromium-driver")
    server, url = start_server(args)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1100, "height": 760})
            page.goto(url + "/")
            page.wait_for_selector("select[data-task=translate] option", state="attached")
            output = Path(args.output)
            translate_tab(page, output)
            caption_tab(page, Path(args.image), output)
            generate_tab(page, output)
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"screenshots in {args.output}: serve_translate.png, serve_caption.png, serve_generate.png")


if __name__ == "__main__":
    main()

"""A screenshot of the interest explorer (``bamrec serve``'s page) in headless Chromium, for the docs.

    bamrec serve RUN --port 8000 &
    python benchmarks/explorer_screenshot.py "http://127.0.0.1:8000/?user=1&k=10" --out docs/images/explorer-ml-1m.png

Opens the address, waits until the page has drawn its results (or shows an error, which fails), makes
the window as tall as the page and saves it at ``--width`` pixels, quantised to ``--colours`` colours
(Pillow) so that the PNG stays small. Needs selenium and Debian's chromium + chromium-driver (make setup).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path


def screenshot(url: str, out: Path, width: int = 1200, colours: int = 96, wait_s: float = 90) -> dict:
    from PIL import Image
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser, driver = shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver")
    if not browser or not driver:
        raise SystemExit("explorer_screenshot: chromium and chromedriver are needed (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    profile = tempfile.mkdtemp(prefix="explorer-shot-")
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     f"--window-size={width},900", "--hide-scrollbars", f"--user-data-dir={profile}"):
        options.add_argument(argument)
    chrome = webdriver.Chrome(options=options, service=Service(driver))
    try:
        chrome.get(url)
        WebDriverWait(chrome, wait_s).until(
            lambda d: d.find_elements(By.CSS_SELECTOR, "#interests section.panel") or d.find_element(By.ID, "error").text)
        error = chrome.find_element(By.ID, "error").text
        if error:
            raise SystemExit(f"explorer_screenshot: the page shows an error: {error}")
        status = chrome.find_element(By.ID, "status").text
        height = chrome.execute_script("return document.documentElement.scrollHeight")
        chrome.set_window_size(width, height + 20)
        time.sleep(0.5)  # let the resized page settle before the picture
        raw = out.with_suffix(".raw.png")
        chrome.save_screenshot(str(raw))
    finally:
        chrome.quit()
        shutil.rmtree(profile, ignore_errors=True)
    image = Image.open(raw).convert("RGB")
    image.quantize(colors=colours, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(out, optimize=True)
    raw.unlink()
    return {"status": status, "size": image.size, "bytes": out.stat().st_size}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="the explorer's address, e.g. http://127.0.0.1:8000/?user=1")
    parser.add_argument("--out", required=True, type=Path, help="PNG file to write")
    parser.add_argument("--width", type=int, default=1200, help="window width in pixels (default: 1200)")
    parser.add_argument("--colours", type=int, default=96, help="palette size of the PNG (default: 96)")
    args = parser.parse_args()
    shot = screenshot(args.url, args.out, args.width, args.colours)
    print(f"{args.out}: {shot['size'][0]}x{shot['size'][1]} px, {shot['bytes']:,} bytes ({shot['status']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

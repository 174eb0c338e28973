"""The interest explorer in a real browser: `bamrec serve RUN` in its own process on a free port, the
page opened in headless Chromium (Selenium driving Debian's chromium + chromium-driver, no browser
download), a user picked with the keyboard; the history, the K interest panels and the recommendations
with their titles must agree with the run's dataset and with `bamrec recommend --json`. Each test
saves a screenshot into its tmp_path. Skipped only where Chromium or its driver cannot be found
(`make setup` installs them where apt-get is available and we are root)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("selenium", reason="selenium is not installed: pip install -c constraints.txt -e '.[dev]'")

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from bamrec.api import load_run  # noqa: E402
from bamrec.cli import main  # noqa: E402
from numerics import assert_ranking_close  # noqa: E402

WAIT_S = 90  # generous: the test machines are shared and often loaded
K = 10


def _chromium() -> tuple[str, str]:
    """Paths of the Chromium browser and its driver (BAMREC_CHROMIUM / BAMREC_CHROMEDRIVER override)."""
    browser = os.environ.get("BAMREC_CHROMIUM") or next(
        (found for name in ("chromium", "chromium-browser", "google-chrome") if (found := shutil.which(name))), None)
    driver = os.environ.get("BAMREC_CHROMEDRIVER") or shutil.which("chromedriver")
    if not browser or not driver:
        pytest.skip(f"Chromium not found (browser: {browser or 'missing'}, chromedriver: {driver or 'missing'}): "
                    "apt-get install chromium chromium-driver, or run make setup as root")
    return browser, driver


@pytest.fixture(scope="module")
def served(titled_run):
    """`bamrec serve RUN --port 0` in its own process; yields its base address."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "bamrec.cli", "serve", str(titled_run), "--port", "0"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        banner = process.stdout.readline().decode()
        assert "http://127.0.0.1:" in banner, (banner, process.stderr.read())
        address = "http://127.0.0.1:" + banner.split("http://127.0.0.1:")[1].split()[0]
        deadline = time.time() + WAIT_S
        while True:
            assert process.poll() is None, process.stderr.read().decode()
            try:
                httpx.get(address + "/health", timeout=5).raise_for_status()
                break
            except httpx.TransportError:
                assert time.time() < deadline, "bamrec serve did not start"
                time.sleep(0.1)
        yield address
    finally:
        process.terminate()
        process.wait(timeout=20)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Headless Chromium through chromedriver; 1200 px wide, as the docs' screenshot."""
    binary, driver = _chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1200,900", "--hide-scrollbars",
                     f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(argument)
    chrome = webdriver.Chrome(options=options, service=Service(driver))
    chrome.set_page_load_timeout(WAIT_S)
    try:
        yield chrome
    finally:
        chrome.quit()


def _shown(browser, what: str) -> None:
    """Wait until the status line says the results of ``what`` are drawn, or fail with the page's error."""
    def done(driver) -> bool:
        error = driver.find_element(By.ID, "error").text
        assert not error, f"the page shows an error: {error}"
        return driver.find_element(By.ID, "status").text.startswith(what)
    WebDriverWait(browser, WAIT_S).until(done)


def _screenshot(browser, path: Path) -> Path:
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1200, min(height + 20, 6000))  # the whole page in one picture
    browser.save_screenshot(str(path))
    browser.set_window_size(1200, 900)
    return path


def _cells(row) -> list[str]:
    return [cell.text for cell in row.find_elements(By.TAG_NAME, "td")]


def _user_to_show(run):
    """A user whose history is longer than the model's window and reads an item without metadata."""
    dataset, metadata, seq_len = run.dataset(), run.item_metadata(), run.config.model.seq_len
    for row, user in enumerate(dataset.user_ids.tolist(), start=1):
        window = dataset.sequence(row)[-seq_len:]
        if len(dataset.sequence(row)) > seq_len and any(metadata.title(int(i)) is None for i in window):
            return user, row
    raise AssertionError("the titled dataset has no such user")


@pytest.mark.order_sensitive
def test_a_user_in_the_browser_agrees_with_bamrec_recommend(browser, served, titled_run, tmp_path, capsys):
    laps, started = [], time.perf_counter()

    def lap(name: str) -> None:  # the phases' times, printed at the end (-s shows them)
        laps.append(f"{name} {time.perf_counter() - started:.1f}")

    run = load_run(titled_run)
    user, row = _user_to_show(run)
    dataset, metadata, seq_len = run.dataset(), run.item_metadata(), run.config.model.seq_len
    num_interests = run.model.num_interests

    browser.get(served + "/")
    field = browser.find_element(By.ID, "user")
    field.clear()
    field.send_keys(str(user))
    k = browser.find_element(By.ID, "k")
    k.clear()
    k.send_keys(str(K), Keys.ENTER)  # submitted from the keyboard
    lap("page")
    _shown(browser, f"User {user}:")
    lap("drawn")

    # The history: the window the model read, oldest first, each with its title (or "item ID").
    window = dataset.sequence(row)[-seq_len:].tolist()
    rows = browser.find_elements(By.CSS_SELECTOR, "#history-table tbody tr")
    assert [r.get_attribute("data-item") for r in rows] == [str(dataset.item_ids[i - 1]) for i in window]
    titles = [metadata.title(i) or f"item {dataset.item_ids[i - 1]}" for i in window]
    assert [r.find_element(By.CSS_SELECTOR, "td.title span").text for r in rows] == titles
    assert any(title.startswith("item ") for title in titles) and any(title.startswith("Film ") for title in titles)

    # The recommendations: what `bamrec recommend --json` prints for this user, titles included.
    capsys.readouterr()
    assert main(["recommend", str(titled_run), "--user", str(user), "-k", str(K), "--exclude-history", "--json"]) == 0
    expected = json.loads(capsys.readouterr().out)
    lap("recommend")
    rows = browser.find_elements(By.CSS_SELECTOR, "#recommendations-table tbody tr")
    # Another process: equal up to float rounding, items exactly where the scores are not tied.
    assert_ranking_close([r.get_attribute("data-item") for r in rows],
                         [float(r.get_attribute("data-score")) for r in rows],
                         [str(e["item"]) for e in expected], [e["score"] for e in expected],
                         extra_a=[int(r.get_attribute("data-interest")) for r in rows],
                         extra_b=[e["interest"] for e in expected])
    shown_titles = {r.get_attribute("data-item"): r.find_element(By.CSS_SELECTOR, "td.title span").text for r in rows}
    assert shown_titles == {str(e["item"]): e.get("title") or f"item {e['item']}" for e in expected}

    # K interest panels, each with what it draws on and its own top items; the balance adds up to k.
    panels = browser.find_elements(By.CSS_SELECTOR, "#interests section.panel")
    assert [p.find_element(By.TAG_NAME, "h4").text for p in panels] == [f"{i} Interest {i}" for i in range(num_interests)]
    for panel in panels:
        assert len(panel.find_elements(By.CSS_SELECTOR, "table.draws-on tbody tr")) == min(8, len(window))
        tops = panel.find_elements(By.CSS_SELECTOR, "ol.top li")
        assert len(tops) == K and all(t.text for t in tops)
    counts = [int(_cells(r)[0]) for r in browser.find_elements(By.CSS_SELECTOR, "#balance-table tbody tr")]
    assert len(counts) == num_interests and sum(counts) == K
    assert counts == [sum(e["interest"] == i for e in expected) for i in range(num_interests)]

    # The address now links to this user; opening it draws the same user again.
    assert browser.current_url.endswith(f"/?user={user}&k={K}")
    lap("checked")
    shot = _screenshot(browser, tmp_path / "explorer.png")
    assert shot.stat().st_size > 10_000
    lap("screenshot")
    print(f"explorer browser test: user {user}, seconds since the start: {', '.join(laps)}; screenshot {shot}")


def test_a_link_opens_a_user_and_an_unknown_user_is_a_clear_message(browser, served, tmp_path):
    browser.get(served + "/?user=2")
    _shown(browser, "User 2:")
    assert browser.find_element(By.ID, "permalink").get_attribute("href").endswith("/?user=2")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#interests section.panel")) == 3
    # The service's {"error": ...} for an unknown user, as typed into the form.
    field = browser.find_element(By.ID, "user")
    field.clear()
    field.send_keys("999", Keys.ENTER)
    WebDriverWait(browser, WAIT_S).until(lambda driver: driver.find_element(By.ID, "error").text)
    assert browser.find_element(By.ID, "error").text == \
        "unknown user 999: not in the run's dataset (41 users)"
    assert not browser.find_elements(By.CSS_SELECTOR, "#interests section.panel")  # the old user's results are gone
    # A pasted history of ids, one of them without metadata.
    browser.find_element(By.CSS_SELECTOR, "input[name=by][value=items]").click()
    browser.find_element(By.ID, "items").send_keys("3, 4 27", Keys.TAB)
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").send_keys(Keys.ENTER)
    _shown(browser, "A history of 3 items:")
    assert [r.find_element(By.CSS_SELECTOR, "td.title span").text
            for r in browser.find_elements(By.CSS_SELECTOR, "#history-table tbody tr")] == \
        ["Film 3 (1993)", "Film 4 (1994)", "item 27"]
    _screenshot(browser, tmp_path / "explorer-history.png")

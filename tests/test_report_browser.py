"""The report in a real browser: headless Chromium loads it from file:// and we check
that it makes no request, logs no error, draws non-blank charts and shows log markup as text.

Set ``MIGTUNE_SCREENSHOTS=DIR`` to keep full-page screenshots for a human to look at.
"""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from conftest import REAL_LOGS
from migtune.model import Settings
from migtune.report import write_report
from migtune.sources import load_run
from test_report import IMG, SCRIPT, MiB, write_recording

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
WIDTH = 1280
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    f"--window-size={WIDTH},900",
)


@pytest.fixture
def browser(tmp_path):
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.skip(
            "chromium and chromedriver are not installed (Debian: chromium chromium-driver)"
        )
    try:  # part of the test extra: a missing driver is a broken setup, not a reason to skip
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail("selenium is not installed: pip install -e '.[test]'")

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    try:
        yield driver
    finally:
        driver.quit()


def _lab_report(tmp_path: Path) -> Path:
    observed = write_recording(
        tmp_path / "observed.jsonl",
        auto_converge=True,
        downtime_changes=((25.0, 0.6), (40.0, 1.2)),
        settings=Settings(
            downtime_limit=0.3, max_bandwidth=100 * MiB, capabilities={"auto-converge": True}
        ),  # fmt: skip
        message=f"guest said {SCRIPT} {IMG}",
    )
    whatif = write_recording(tmp_path / "whatif.jsonl", bandwidth=400 * MiB, origin="simulate")
    out = tmp_path / "lab.html"
    write_report(load_run(observed), out, [load_run(whatif)])
    return out


def _proxmox_report(tmp_path: Path) -> Path:
    log = REAL_LOGS / "proxmox-github-pve8-ha-diskless-4GiB-completed.txt"
    lines = log.read_text(encoding="utf-8").splitlines()
    at = next(i for i, line in enumerate(lines) if "migration active" in line)
    lines.insert(at, f"2025-01-04 00:34:29 {SCRIPT} {IMG}")
    copy = tmp_path / "pve8-with-markup.log"
    copy.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "proxmox.html"
    write_report(load_run(copy), out)
    return out


def _requests(driver) -> list[str]:
    urls = []
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg.get("method") in ("Network.requestWillBeSent", "Network.webSocketCreated"):
            urls.append(msg["params"].get("request", {}).get("url") or msg["params"].get("url"))
    return urls


def _keep_screenshot(driver, name: str) -> None:
    keep = os.environ.get("MIGTUNE_SCREENSHOTS")
    if not keep:
        return
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(WIDTH, min(height + 160, 8000))
    Path(keep).mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(Path(keep) / f"{name}.png"))
    driver.set_window_size(WIDTH, 900)


@pytest.mark.parametrize("build", [_lab_report, _proxmox_report], ids=["lab+compare", "proxmox"])
def test_report_in_chromium(browser, tmp_path, build):
    from selenium.webdriver.common.by import By

    page = build(tmp_path)
    url = page.resolve().as_uri()
    browser.get("about:blank")
    browser.get_log("performance")  # drop the browser's own start-up traffic (new-tab page)
    browser.get(url)
    assert browser.execute_script("return document.readyState") == "complete"

    # Nothing but the file itself was requested, and the console is clean.
    assert _requests(browser) == [url]
    errors = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    assert errors == []

    # The charts are there and drawn: each screenshot holds more than one colour.
    charts = browser.find_elements(By.CSS_SELECTOR, "figure.chart svg")
    assert len(charts) == 2
    for svg in charts:
        assert svg.size["width"] > 0.8 * WIDTH - 100 and svg.size["height"] > 250
        pixels = imread(io.BytesIO(svg.screenshot_as_png))[..., :3]
        flat = pixels.reshape(-1, 3)
        assert len(np.unique(flat, axis=0)) > 10
        not_white = (flat < 0.95).any(axis=1).mean()
        assert 0.01 < not_white < 0.9, not_white

    # Readable at 1280 px: no horizontal scrolling.
    assert browser.execute_script("return document.documentElement.scrollWidth") <= WIDTH

    # The log is folded, and its markup is text: no element came from it.
    assert browser.execute_script("return document.querySelector('details.log').open") is False
    assert browser.execute_script("return document.querySelectorAll('script, img').length") == 0
    lines = browser.execute_script(
        "return Array.from(document.querySelectorAll('code.line'), e => e.textContent)"
    )
    assert any(SCRIPT in line and IMG in line for line in lines)
    text = browser.execute_script("return document.body.textContent")
    assert SCRIPT in text
    _keep_screenshot(browser, page.stem)

"""The review page in a real browser: headless Chromium (Debian ``chromium`` +
``chromium-driver``) driven by Selenium opens it from disk, answers the queue from known
labels by clicking, exports, calibrates with the export, and checks that the page asked
for nothing over the network. Skips when Chromium, its driver or Selenium are missing.

``SHOPEE_MATCH_DOCS_SCREENSHOT=1`` also writes the screenshot to ``docs/img/review.png``.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from shopee_match import Pipeline, make_catalog
from shopee_match.calibration import calibrate_pairs, read_pair_labels
from shopee_match.cli import main

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and DRIVER),
                                reason="chromium and chromium-driver are not installed")
DOCS = Path(__file__).resolve().parents[1] / "docs" / "img"


@pytest.fixture
def browser(tmp_path):
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    opts = Options()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-dev-shm-usage", "--window-size=1200,900",
                 f"--user-data-dir={tmp_path / 'profile'}"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    try:
        yield driver
    finally:
        driver.quit()


def requested_urls(driver) -> tuple[list[str], list[str]]:
    """The URLs the page's documents asked for (Chrome's network log and the page's own
    resource timing), and every URL the browser asked for at all."""
    ours, everything = [], []
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg.get("method") == "Network.requestWillBeSent":
            url = msg["params"]["request"]["url"]
            everything.append(url)
            if msg["params"].get("documentURL", "").startswith("file:"):
                ours.append(url)
    ours += driver.execute_script(
        "return performance.getEntriesByType('navigation')"
        ".concat(performance.getEntriesByType('resource')).map(e => e.name)")
    return ours, everything


def test_review_page_queue_export_calibrate(tmp_path, browser, capsys):
    cat = make_catalog(n_groups=80, per_group=(1, 4), images=False, seed=4)
    csv = tmp_path / "catalogue.csv"
    cat.df.drop(columns=["label_group"]).rename(columns={"posting_id": "id", "title": "name"}) \
        .to_csv(csv, index=False)
    page = tmp_path / "review.html"
    assert main(["review", str(csv), "--id-column", "id", "--title-column", "name",
                 "--queue", "40", "-o", str(page), "-q"]) == 0
    truth = cat.df.set_index("posting_id")["label_group"]

    start = time.perf_counter()
    browser.get(page.as_uri())
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, 10).until(
        lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "true")
    assert time.perf_counter() - start < 10
    pairs = browser.find_elements(By.CSS_SELECTOR, "[data-pair]")
    assert len(pairs) == 40
    expected = []
    for el in pairs:
        left, right = el.get_attribute("data-left"), el.get_attribute("data-right")
        same = int(truth[left] == truth[right])
        el.find_element(By.CSS_SELECTOR, f'[data-answer="{"same" if same else "different"}"]').click()
        assert el.get_attribute("data-answered") == ("same" if same else "different")
        expected.append((left, right, same))
    # every answer in the export (waited for: one CI run read it header-only once)
    WebDriverWait(browser, 10).until(lambda d: d.execute_script(
        "return window.shopeeMatch.exportLabels()").count("\n") == len(pairs) + 1)
    text = browser.execute_script("return window.shopeeMatch.exportLabels()")
    exported = pd.read_csv(io.StringIO(text), dtype={"left_id": str, "right_id": str})
    assert list(exported.columns) == ["left_id", "right_id", "same"]
    assert sorted(map(tuple, exported.itertuples(index=False, name=None))) == sorted(expected)

    # answers survive a reload (localStorage), and the search finds a set by title
    browser.refresh()
    WebDriverWait(browser, 10).until(
        lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "true")
    WebDriverWait(browser, 10).until(
        lambda d: d.execute_script("return window.shopeeMatch.exportLabels()") == text)
    browser.find_element(By.ID, "tab-sets").click()
    shot = tmp_path / "review.png"
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
    if os.environ.get("SHOPEE_MATCH_DOCS_SCREENSHOT"):
        browser.find_element(By.ID, "tab-queue").click()
        browser.execute_script("window.scrollTo(0, 0)")
        browser.save_screenshot(str(DOCS / "review.png"))

    ours, everything = requested_urls(browser)
    assert ours and all(u.split(":", 1)[0] in ("file", "data") for u in ours), ours
    assert not [u for u in everything if u.split(":", 1)[0] in ("http", "https", "ws", "wss")]

    # the export calibrates the shipped model, through the CLI and the Python call
    labels = tmp_path / "labels.csv"
    labels.write_text(text, encoding="utf-8")
    model = tmp_path / "model"
    assert main(["calibrate", "--pairs", str(labels), "--catalogue", str(csv), "--id-column",
                 "id", "--title-column", "name", "-o", str(model), "-q"]) == 0
    calibrated = Pipeline.load(model)
    c = calibrated.tuning_["calibration"]
    assert c["method"] == "pairs" and c["labelled_pairs"] == 40
    assert c["same_pairs"] == sum(s for _, _, s in expected)
    assert c["f1"] >= c["f1_before"] - 1e-9  # the chosen cut is the best the labels allow
    ours = calibrate_pairs(Pipeline.pretrained(), read_pair_labels(labels), cat)
    assert ours.combiner_.threshold_ == pytest.approx(calibrated.combiner_.threshold_)
    assert np.isfinite(c["platt"]).all()

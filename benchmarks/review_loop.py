"""The review loop end to end: a queue of reviewed pairs through ``calibrate --pairs``.

    nice -n 10 python benchmarks/review_loop.py --data ../shared/data
    nice -n 10 python benchmarks/review_loop.py --data ../shared/data --seeds 0 1 2 --queue 200

For each catalogue (a group-disjoint third of Shopee's ``train_dev.csv``, titles only;
all of Amazon-Google), the shipped model scores every candidate pair once
(``review.score_pairs``), the review page's queue draws ``--queue`` pairs
(``review.review_queue``, per seed), their answers are simulated from the catalogue's
labels (what the browser test does by clicking) and ``calibration.calibrate_pairs``
re-chooses the cut. F1 is scored on the postings whose label groups no queued pair
touched (beside the shipped cut and matching nothing on the same postings), and on all.

Then the page itself: ``write_review`` of a 35k-posting catalogue (PriceRunner, titles),
its size, and the time until it is usable in headless Chromium (``data-ready``), when
Chromium, chromedriver and Selenium are installed.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from shopee_match import Pipeline, read_postings, train_test_split_groups
from shopee_match.calibration import calibrate_pairs
from shopee_match.data import Postings
from shopee_match.metrics import graph_f1_scores, match_nothing_f1
from shopee_match.review import review_page, review_queue, score_pairs

KEEP = ["posting_id", "title", "label_group"]


def catalogues(data: Path) -> dict[str, Postings]:
    _, sh_te = train_test_split_groups(read_postings(data / "shopee" / "train_dev.csv"), 1 / 3, 0)
    ag = read_postings(data / "amazon_google" / "postings.csv")
    return {"shopee third (titles)": Postings(sh_te.df[KEEP], source="shopee third"),
            "amazon_google": Postings(ag.df[KEEP], source="amazon_google")}


def loop(name: str, cat: Postings, seeds: list[int], n_queue: int) -> list[dict[str, object]]:
    t0 = time.perf_counter()
    scores = score_pairs(Pipeline.pretrained(), cat)
    t_score = time.perf_counter() - t0
    groups = cat.groups()
    rows = []
    for seed in seeds:
        q = review_queue(scores, n_queue, random_state=seed)
        same = (groups[q["left"].to_numpy()] == groups[q["right"].to_numpy()]).astype(int)
        labels = pd.DataFrame({"left_id": q["left_id"], "right_id": q["right_id"], "same": same})
        pipe = Pipeline.pretrained()
        t0 = time.perf_counter()
        calibrate_pairs(pipe, labels, cat)
        t_cal = time.perf_counter() - t0
        c = pipe.tuning_["calibration"]
        touched = np.isin(groups, np.unique(groups[np.r_[q["left"], q["right"]]]))
        held = ~touched
        shipped = graph_f1_scores(scores.matches, groups)
        calibrated = graph_f1_scores(pipe.combiner_.matches(scores.proba, cat.titles), groups)
        floor = 2.0 / (np.bincount(groups)[groups] + 1)
        rows.append({
            "catalogue": name, "seed": seed, "postings": len(cat), "queue": len(q),
            "same": int(same.sum()), "held_postings": int(held.sum()),
            "nothing_held": floor[held].mean(), "shipped_held": shipped[held].mean(),
            "calibrated_held": calibrated[held].mean(),
            "nothing_all": match_nothing_f1(groups), "shipped_all": shipped.mean(),
            "calibrated_all": calibrated.mean(),
            "cut": f"{c['threshold_before']:.3f},{c['min_matches_before']} -> "
                   f"{c['threshold']:.3f},{c['min_matches']}",
            "score_s": round(t_score, 1), "calibrate_s": round(t_cal, 1),
        })
        print(rows[-1], flush=True)
    return rows


def page_check(data: Path, n_queue: int) -> dict[str, object]:
    pr = read_postings(data / "pricerunner" / "postings.csv")
    cat = Postings(pr.df[["posting_id", "title"]], source="pricerunner")
    t0 = time.perf_counter()
    scores = score_pairs(Pipeline.pretrained(), cat)
    page = review_page(scores, n_queue)
    t_build = time.perf_counter() - t0
    out = Path(tempfile.mkdtemp()) / "review.html"
    out.write_text(page, encoding="utf-8")
    res: dict[str, object] = {"postings": len(cat), "mb": out.stat().st_size / 1e6,
                              "build_s": round(t_build, 1)}
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        print("chromium/chromedriver missing: no browser timing")
        return res
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    opts = Options()
    opts.binary_location = chromium
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-dev-shm-usage", f"--user-data-dir={out.parent / 'profile'}"):
        opts.add_argument(flag)
    d = webdriver.Chrome(service=Service(driver), options=opts)
    try:
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            d.get(out.as_uri())
            WebDriverWait(d, 60).until(lambda x: x.find_element(By.TAG_NAME, "body")
                                       .get_attribute("data-ready") == "true")
            wall = time.perf_counter() - t0
            ready = d.execute_script("return window.shopeeMatch.readyMs") / 1000
            times.append((wall, ready))
            d.get("about:blank")
        res["usable_s_wall"] = round(float(np.median([t[0] for t in times])), 2)
        res["usable_s_page"] = round(float(np.median([t[1] for t in times])), 2)
    finally:
        d.quit()
    print(res, flush=True)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--queue", type=int, default=200)
    ap.add_argument("--skip-page", action="store_true")
    args = ap.parse_args()
    rows = []
    for name, cat in catalogues(args.data).items():
        rows += loop(name, cat, args.seeds, args.queue)
    df = pd.DataFrame(rows)
    pd.set_option("display.width", 250)
    print(df.to_string(float_format=lambda v: f"{v:.4f}"))
    mean = df.groupby("catalogue")[["nothing_held", "shipped_held", "calibrated_held",
                                    "nothing_all", "shipped_all", "calibrated_all"]].mean()
    mean["gain_held"] = mean["calibrated_held"] - mean["shipped_held"]
    print(mean.to_string(float_format=lambda v: f"{v:.4f}"))
    if not args.skip_page:
        page_check(args.data, args.queue)


if __name__ == "__main__":
    main()

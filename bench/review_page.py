"""Review page of a 200-clip batch: how long it takes to write and to open, and what it loads at once.

Usage: ``python bench/review_page.py FOLDER`` where FOLDER holds a batch scored with ``--review``
(any clips; the tests' batch is four). Its clips are repeated under other names (hard links of the
outputs, copies of the sidecars) into a 200-clip folder beside it, then:

- ``write_review`` of that folder (reading 200 clips' sidecars) against the original folder's;
- Debian's chromium (headless, via Playwright) opens each page: time from navigation to every clip
  built, best of 3, and the requests made before any clip is played.
"""

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

from scoretrack import review

CLIPS = 200
RUNS = 3


def widen(folder: Path, target: Path, clips: int) -> None:
    """``folder``'s clips repeated under other names in ``target`` until it holds ``clips``."""
    names = sorted(review.read_takes(folder).items())
    target.mkdir()
    for n in range(clips):
        main, takes = names[n % len(names)]
        for _, (name, record) in takes.items():
            prefix = f"{n:03d} "
            os.link(folder / name, target / (prefix + name))
            record = {**record, "side": {kind: {**item, "name": prefix + item["name"]} for kind, item in record.get("side", {}).items()}}
            (target / f"{prefix}{name}{review.SIDECAR_SUFFIX}").write_text(json.dumps(record), encoding="utf-8")


def best(fn) -> float:
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def open_page(browser, folder: Path) -> tuple[float, int, int]:
    """Seconds from navigation to every clip built, best of RUNS; requests at load; players built."""
    times, requests, count = [], [], 0
    for _ in range(RUNS):
        page = browser.new_page(viewport={"width": 1000, "height": 900})
        requests = []
        page.on("request", lambda r: requests.append(r.url))
        start = time.perf_counter()
        page.goto((folder / review.PAGE_NAME).as_uri())
        page.wait_for_function("window.review && window.review.players.length > 0")
        times.append(time.perf_counter() - start)
        count = page.evaluate("review.players.length")
        page.close()
    return min(times), len(requests), count


def main(folder: Path) -> None:
    with tempfile.TemporaryDirectory(dir=folder.parent) as temp:
        many = Path(temp) / "many"
        widen(folder, many, CLIPS)
        small_s = best(lambda: review.write_review(folder))
        many_s = best(lambda: review.write_review(many))
        size = (many / review.PAGE_NAME).stat().st_size
        print(f"write_review: {len(review.read_takes(folder))} clips {small_s * 1e3:.1f} ms, "
              f"{CLIPS} clips {many_s * 1e3:.1f} ms ({many_s / small_s:.1f}x); page {size / 1e3:.0f} kB")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=shutil.which("chromium"))
            for label, path in (("small", folder), (f"{CLIPS} clips", many)):
                seconds, requests, count = open_page(browser, path)
                print(f"open {label}: {count} clips built in {seconds * 1e3:.0f} ms; {requests} request(s) at load")
            browser.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve())

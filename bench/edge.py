"""The edge page (`make edge`): bundle sizes, page load and click-to-answer in a real browser.

The penguins bundle is written to a temporary directory (``sklambda_tools.edge.bundle``) and
served from a local static server; the system's Chromium (``SKLAMBDA_CHROMIUM`` or
``chromium`` on PATH), headless, driven by Playwright (``sklambda_tools.edgebrowser``):

- sizes: the bundle without ``ort/`` (graph, manifest, module, page) and onnxruntime-web's files;
- page load to ready: from the navigation's start to ``body[data-state=ready]`` (manifest and
  graph fetched, the graph's SHA-256 checked, the onnxruntime session made and warmed up), in
  a fresh browser context each time (nothing cached), median of ``--loads``;
- first click: the first Predict after each of those loads;
- warm click-to-answer: ``--clicks`` Predicts on one loaded page, holdout birds in turn, as
  the page measures it (``performance.now()`` from its submit handler's start to the DOM
  updated, ``window.sklambdaTimings``), after 5 unmeasured ones;

on a desktop viewport (1000x800) and on a phone-class device (Playwright's Pixel 7: viewport,
user agent, touch; the CPU slowed 4x through the DevTools protocol, Chrome's "mid-tier mobile"
preset). The goals: under 50 ms warm click-to-answer, under 100 KB without onnxruntime.
``--screenshot PATH`` writes the desktop page after one answer, for the holdout bird the model
is least sure of (the README's picture: ``docs/edge-page.png``).
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from playwright.sync_api import Browser, Playwright, sync_playwright

from sklambda.manifest import read_manifest
from sklambda_tools import edge
from sklambda_tools.edgebrowser import (
    PHONE_CPU_THROTTLE,
    PHONE_DEVICE,
    EdgePage,
    find_chromium,
    launch,
    open_page,
    serve,
)
from sklambda_tools.examples import penguins
from sklambda_tools.package import frame_to_records

ROOT = Path(__file__).resolve().parents[1]
MODEL_DIR = ROOT / "models" / "penguins"
DESKTOP = {"width": 1000, "height": 800}
GOAL_WARM_MS = 50.0
GOAL_OWN_BYTES = 100 * 1024


def holdout_birds() -> list[dict[str, Any]]:
    splits = penguins.split(penguins.load_frame())
    return frame_to_records(splits.test, read_manifest(MODEL_DIR).features)


def least_sure(birds: list[dict[str, Any]]) -> dict[str, Any]:
    """The holdout bird the model is least sure of (by Python's answer): a picture with bars
    that are neither all nor nothing."""
    from sklambda.model import load
    from sklambda.scoring import predict_all

    predictions = predict_all(load(MODEL_DIR), birds).predictions()
    scores = [max(p["probabilities"].values()) for p in predictions]
    return birds[scores.index(min(scores))]


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def device(
    playwright: Playwright,
    browser: Browser,
    url: str,
    birds: list[dict[str, Any]],
    *,
    phone: bool,
    loads: int,
    clicks: int,
) -> dict[str, Any]:
    ready, first = [], []
    for i in range(loads):
        page = ready_page(playwright, browser, url, phone)
        try:
            ready.append(page.ready_ms())
            first.append(page.predict(birds[i % len(birds)])[1])
            check(page)
        finally:
            page.close()
    page = ready_page(playwright, browser, url, phone)
    try:
        for bird in birds[:5]:
            page.predict(bird)
        warm = [page.predict(birds[i % len(birds)])[1] for i in range(clicks)]
        check(page)
    finally:
        page.close()
    return {
        "ready_ms": {"median": statistics.median(ready), "values": ready},
        "first_click_ms": {"median": statistics.median(first), "values": first},
        "warm_ms": {
            "median": statistics.median(warm),
            "p90": pct(warm, 90),
            "max": max(warm),
            "clicks": clicks,
            "values": warm,
        },
    }


def ready_page(playwright: Playwright, browser: Browser, url: str, phone: bool) -> EdgePage:
    page = open_page(playwright, browser, url, phone=phone, viewport=None if phone else DESKTOP)
    page.wait_ready()
    return page


def check(page: EdgePage) -> None:
    if page.errors:
        raise RuntimeError(f"the page reported errors: {page.errors}")


def screenshot(
    playwright: Playwright, browser: Browser, url: str, bird: dict[str, Any], path: Path
) -> None:
    page = ready_page(playwright, browser, url, phone=False)
    try:
        answer, _ = page.predict(bird)
        if "predictions" not in answer:
            raise RuntimeError(f"the screenshot's bird was refused: {answer}")
        check(page)
        path.parent.mkdir(parents=True, exist_ok=True)
        page.page.screenshot(path=str(path), full_page=True)
    finally:
        page.close()


def kb(n: int) -> str:
    return f"{n / 1024:.1f} KB" if n < 1024 * 1024 else f"{n / 1024 / 1024:.1f} MB"


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench/edge.py")
    parser.add_argument("--loads", type=int, default=5, help="fresh page loads per device")
    parser.add_argument("--clicks", type=int, default=50, help="warm clicks per device")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--screenshot", type=Path, help="write the desktop page after an answer")
    args = parser.parse_args()

    chromium = find_chromium()
    if chromium is None:
        print("bench/edge.py: no Chromium (apt-get install chromium, or SKLAMBDA_CHROMIUM)")
        return 2
    birds = holdout_birds()
    results: dict[str, Any] = {"chromium": chromium}
    with tempfile.TemporaryDirectory() as tmp:
        made = edge.bundle(MODEL_DIR, Path(tmp))
        gzipped = {
            name: len(gzip.compress((made.path / name).read_bytes(), 9)) for name in made.files
        }
        results["bytes"] = {
            "own": made.own_bytes,
            "ort": made.ort_bytes,
            "total": made.own_bytes + made.ort_bytes,
            "own_gzip": sum(n for name, n in gzipped.items() if not name.startswith("ort/")),
            "ort_gzip": sum(n for name, n in gzipped.items() if name.startswith("ort/")),
            "files": made.files,
        }
        with serve(made.path) as site, sync_playwright() as p:
            browser = launch(p, chromium)
            results["browser"] = browser.version
            for name, phone in (("desktop", False), ("phone", True)):
                print(
                    f"{name}: {args.loads} fresh page loads, then {args.clicks} warm clicks",
                    flush=True,
                )
                results[name] = device(
                    p, browser, site.url, birds, phone=phone, loads=args.loads, clicks=args.clicks
                )
            if args.screenshot:
                screenshot(p, browser, site.url, least_sure(birds), args.screenshot)
                print(f"screenshot: {args.screenshot}")
            browser.close()
    results["phone"]["emulation"] = f"{PHONE_DEVICE}, CPU {PHONE_CPU_THROTTLE:g}x slower"

    sizes = results["bytes"]
    print(f"\nChromium {results['browser']} (headless), {chromium}")
    print("\n| Bundle | Size | gzip -9 (what a compressing server sends) |")
    print("|---|---|---|")
    print(
        f"| without ort/ (graph, manifest, module, page) | {kb(sizes['own'])} | "
        f"{kb(sizes['own_gzip'])} |"
    )
    print(f"| onnxruntime-web (ort/) | {kb(sizes['ort'])} | {kb(sizes['ort_gzip'])} |")
    total_gzip = sizes["own_gzip"] + sizes["ort_gzip"]
    print(f"| total | {kb(sizes['total'])} | {kb(total_gzip)} |")
    print("\n| Device | Load to ready (median) | First click | Warm median | Warm p90 | Warm max |")
    print("|---|---|---|---|---|---|")
    for name in ("desktop", "phone"):
        r = results[name]
        label = "desktop (1000x800)" if name == "desktop" else f"phone ({r['emulation']})"
        print(
            f"| {label} | {r['ready_ms']['median']:.0f} ms | "
            f"{r['first_click_ms']['median']:.1f} ms | {r['warm_ms']['median']:.1f} ms | "
            f"{r['warm_ms']['p90']:.1f} ms | {r['warm_ms']['max']:.1f} ms |"
        )
    worst_warm = max(results[name]["warm_ms"]["median"] for name in ("desktop", "phone"))
    goals = {
        f"warm click-to-answer < {GOAL_WARM_MS:g} ms, phone-class ({worst_warm:.1f} ms)": (
            worst_warm < GOAL_WARM_MS
        ),
        f"bundle without ort/ < 100 KB ({kb(sizes['own'])})": sizes["own"] < GOAL_OWN_BYTES,
    }
    results["goals"] = goals
    print("\nGoals:")
    for goal, met in goals.items():
        print(f"  {'met ' if met else 'MISSED'} {goal}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

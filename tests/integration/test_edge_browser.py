"""The edge page in a real headless browser (the system's Chromium, driven by Playwright): the
bundle served from a local static server, birds filled into the generated form, Predict
clicked, the answer read and compared with Python's, on a desktop and on a phone-class device
(Pixel 7 viewport and touch, CPU slowed 4x), and offline once loaded.

Click-to-answer times are reported (``out/edge/browser-timings.json`` and one line at the end
of the module), never asserted: ``bench/edge.py`` measures them properly.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Playwright, sync_playwright

from sklambda.manifest import read_manifest
from sklambda.model import Model, load
from sklambda.scoring import predict_all
from sklambda_tools import edge
from sklambda_tools.edgebrowser import EdgePage, Site, find_chromium, launch, open_page, serve
from sklambda_tools.examples import penguins
from sklambda_tools.package import frame_to_records

from support import PENGUINS_DIR, REPO

CHROMIUM = find_chromium()
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no Chromium for the browser tests: apt-get install chromium, or set "
    "SKLAMBDA_CHROMIUM to a Chromium binary",
)
TIMINGS_FILE = REPO / "out" / "edge" / "browser-timings.json"


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # edge/node_modules must be there (make test installs it first): a missing one fails here
    return edge.bundle(PENGUINS_DIR, tmp_path_factory.mktemp("edge")).path


@pytest.fixture(scope="module")
def manifest_json(bundle_dir: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((bundle_dir / "manifest.json").read_text())
    return loaded


@pytest.fixture(scope="module")
def model() -> Model:
    return load(PENGUINS_DIR)


@pytest.fixture(scope="module")
def holdout() -> list[dict[str, Any]]:
    splits = penguins.split(penguins.load_frame())
    return frame_to_records(splits.test, read_manifest(PENGUINS_DIR).features)


@pytest.fixture(scope="module")
def site(bundle_dir: Path) -> Iterator[Site]:
    with serve(bundle_dir) as served:
        yield served


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    assert CHROMIUM is not None
    opened = launch(playwright, CHROMIUM)
    yield opened
    opened.close()


@pytest.fixture(scope="module")
def timings(request: pytest.FixtureRequest) -> Iterator[dict[str, list[float]]]:
    """Every click-to-answer time of the module, by device; written and reported at its end."""
    measured: dict[str, list[float]] = {"desktop": [], "phone": []}
    yield measured
    report: dict[str, Any] = {}
    for device, values in measured.items():
        if values:
            report[device] = {
                "clicks": len(values),
                "median_ms": statistics.median(values),
                "max_ms": max(values),
                "values_ms": values,
            }
    TIMINGS_FILE.parent.mkdir(parents=True, exist_ok=True)
    TIMINGS_FILE.write_text(json.dumps(report, indent=2) + "\n")
    line = "edge page click-to-answer: " + "; ".join(
        f"{device} median {r['median_ms']:.1f} ms, max {r['max_ms']:.1f} ms ({r['clicks']} clicks)"
        for device, r in report.items()
    )
    capture = request.config.pluginmanager.getplugin("capturemanager")
    reporter = request.config.pluginmanager.getplugin("terminalreporter")
    if capture is not None and reporter is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(f"\n{line} (in {TIMINGS_FILE.relative_to(REPO)})")


def _open(
    playwright: Playwright, browser: Browser, site: Site, *, phone: bool = False
) -> Iterator[EdgePage]:
    page = open_page(playwright, browser, site.url, phone=phone)
    try:
        page.wait_ready()
        yield page
        # (f) nothing went wrong on the page during the test
        assert page.errors == [], f"the page reported errors: {page.errors}"
    finally:
        page.close()


@pytest.fixture
def desktop(playwright: Playwright, browser: Browser, site: Site) -> Iterator[EdgePage]:
    yield from _open(playwright, browser, site)


@pytest.fixture
def phone(playwright: Playwright, browser: Browser, site: Site) -> Iterator[EdgePage]:
    yield from _open(playwright, browser, site, phone=True)


# --- helpers ----------------------------------------------------------------------------------


def python_answer(model: Model, bird: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    scored = predict_all(model, [bird])
    return scored.predictions()[0], [f"{n.path()}: {n.reason}" for n in scored.notes]


def assert_same_prediction(
    got: dict[str, Any], expected: dict[str, Any], tolerance: float, where: str
) -> None:
    assert got["label"] == expected["label"], where
    assert list(got["probabilities"]) == list(expected["probabilities"]), where
    for name, p in expected["probabilities"].items():
        assert abs(got["probabilities"][name] - p) <= tolerance, f"{where}: P({name})"


def assert_shown(page: EdgePage, answer: dict[str, Any], classes: list[str]) -> None:
    """The page shows ``answer``: its label, one bar per class with its probability at 4
    decimals, the label's bar marked, and its notes."""
    prediction = answer["predictions"][0]
    shown = page.shown()
    assert shown["answerShown"] and not shown["refusedShown"]
    assert shown["label"] == str(prediction["label"])
    assert [name for name, _, _ in shown["bars"]] == classes
    for name, text, top in shown["bars"]:
        p = prediction["probabilities"][name]
        assert len(text) == 6 and text[1] == ".", text  # 0.1234
        assert abs(float(text) - p) <= 0.5e-4 + 1e-12, f"{name}: shown {text}, answer {p}"
        assert top == (name == str(prediction["label"]))
    assert shown["notes"] == [f"{n['path']}: {n['reason']}" for n in answer["notes"]]


def tolerance_of(manifest_json: dict[str, Any]) -> float:
    tolerance = float(manifest_json["edge"]["parity"]["tolerance"])
    assert 0 < tolerance <= 1e-5
    return tolerance


def js_number(x: float) -> str:
    """A number as JavaScript's template literals write it (for the bounds the page shows)."""
    return str(int(x)) if float(x).is_integer() else repr(float(x))


# --- (a) holdout birds ----------------------------------------------------------------------


def test_holdout_birds_get_pythons_answer_and_the_page_shows_it(
    desktop: EdgePage,
    model: Model,
    holdout: list[dict[str, Any]],
    manifest_json: dict[str, Any],
    timings: dict[str, list[float]],
    record_property: Any,
) -> None:
    tolerance = tolerance_of(manifest_json)
    classes = [str(c) for c in manifest_json["output"]["classes"]]
    birds = holdout[:5]
    labels = set()
    for i, bird in enumerate(birds):
        answer, ms = desktop.predict(bird)
        timings["desktop"].append(ms)
        expected, expected_notes = python_answer(model, bird)
        assert answer["model"] == {
            "name": manifest_json["name"],
            "version": manifest_json["version"],
        }
        assert len(answer["predictions"]) == 1
        assert_same_prediction(answer["predictions"][0], expected, tolerance, f"bird {i}: {bird}")
        assert [f"{n['path']}: {n['reason']}" for n in answer["notes"]] == expected_notes
        assert_shown(desktop, answer, classes)
        labels.add(expected["label"])
    # birds of different species: a page stuck on one answer would fail
    assert len(labels) >= 2
    assert int(desktop.page.evaluate("document.body.dataset.answered")) == len(birds)
    record_property("click_to_answer_ms", timings["desktop"][-len(birds) :])


# --- (b) offline ----------------------------------------------------------------------------


def test_it_answers_offline_once_loaded(
    desktop: EdgePage,
    site: Site,
    model: Model,
    holdout: list[dict[str, Any]],
    manifest_json: dict[str, Any],
    timings: dict[str, list[float]],
) -> None:
    loaded = list(desktop.requests)
    # what the page loaded: the collector sees requests (so an empty list after is meaningful)
    for name in (
        "manifest.json",
        manifest_json["edge"]["graph"],
        "ort/ort-wasm-simd-threaded.wasm",
    ):
        assert site.url + name in loaded, name
    served = len(site.requested)
    desktop.context.set_offline(True)
    assert desktop.page.evaluate("navigator.onLine") is False
    for bird in holdout[5:8]:
        answer, ms = desktop.predict(bird)
        timings["desktop"].append(ms)
        expected, _ = python_answer(model, bird)
        assert_same_prediction(
            answer["predictions"][0], expected, tolerance_of(manifest_json), str(bird)
        )
    assert desktop.requests == loaded, "the page made requests once offline"
    assert len(site.requested) == served


# --- (c) notes ------------------------------------------------------------------------------


def test_missing_values_and_numbers_outside_the_training_range_get_pythons_notes(
    desktop: EdgePage,
    model: Model,
    holdout: list[dict[str, Any]],
    manifest_json: dict[str, Any],
    timings: dict[str, list[float]],
) -> None:
    features = {f["name"]: f for f in manifest_json["features"]}
    nullable = [name for name, f in features.items() if f["nullable"]]
    selects = [n for n in nullable if features[n]["kind"] == "categorical"]
    numbers = [n for n in nullable if features[n]["kind"] == "numeric"]
    assert selects and numbers, "the penguins model has nullable categories and numbers"
    base = holdout[0]
    outside = {
        **base,
        numbers[0]: features[numbers[0]]["max"] * 2,
        numbers[1]: features[numbers[1]]["min"] / 2,
    }
    missing = {**base, selects[0]: None, numbers[0]: None}
    classes = [str(c) for c in manifest_json["output"]["classes"]]
    # outside first: the missing bird's (empty) notes must replace the shown ones
    for bird, noted in ((outside, True), (missing, False), (outside, True)):
        answer, ms = desktop.predict(bird)
        timings["desktop"].append(ms)
        expected, expected_notes = python_answer(model, bird)
        assert bool(expected_notes) is noted, expected_notes
        assert_same_prediction(
            answer["predictions"][0], expected, tolerance_of(manifest_json), str(bird)
        )
        assert desktop.shown()["notes"] == expected_notes
        assert_shown(desktop, answer, classes)
    assert len(expected_notes) == 2


# --- (d) what the page shows ----------------------------------------------------------------


def test_the_page_shows_the_model_its_known_faults_and_a_form_from_the_schema(
    desktop: EdgePage, manifest_json: dict[str, Any]
) -> None:
    page = desktop.page
    assert page.inner_text("#model-name") == manifest_json["name"]
    assert manifest_json["version"] in page.inner_text("#model-version")
    faults = page.locator("#fault-list li").all_inner_texts()
    assert manifest_json["known_faults"], "the penguins model has known faults"
    assert len(faults) == len(manifest_json["known_faults"])
    for shown, fault in zip(faults, manifest_json["known_faults"], strict=True):
        assert fault["condition"] in shown
    controls = page.eval_on_selector_all(
        "#instance input, #instance select", "es => es.map((e) => e.id)"
    )
    assert controls == [f"f-{f['name']}" for f in manifest_json["features"]]
    for f in manifest_json["features"]:
        selector = f"#f-{f['name']}"
        if f["kind"] == "categorical":
            assert page.eval_on_selector(selector, "e => e.tagName") == "SELECT"
            options = page.eval_on_selector_all(
                f"{selector} option", "os => os.map((o) => [o.value, o.textContent])"
            )
            expected = [["", "(missing)"]] if f["nullable"] else []
            expected += [[c, c] for c in f["categories"]]
            assert options == expected, f["name"]
        else:
            assert page.get_attribute(selector, "type") == "number", f["name"]
            hint = page.inner_text(f"{selector} + small")
            bounds = f"{js_number(f['min'])} to {js_number(f['max'])}"
            assert f"trained on {bounds}" in hint, (f["name"], hint)
            assert ("may stay empty" in hint) is f["nullable"]


# --- (e) a phone-class device ---------------------------------------------------------------


def test_a_phone_class_device_gets_pythons_answer(
    phone: EdgePage,
    model: Model,
    holdout: list[dict[str, Any]],
    manifest_json: dict[str, Any],
    timings: dict[str, list[float]],
) -> None:
    emulated = phone.page.evaluate(
        "[window.innerWidth, navigator.maxTouchPoints, navigator.userAgent]"
    )
    assert emulated[0] < 500 and emulated[1] > 0 and "Mobile" in emulated[2], emulated
    classes = [str(c) for c in manifest_json["output"]["classes"]]
    for bird in holdout[10:13]:
        answer, ms = phone.predict(bird)
        timings["phone"].append(ms)
        expected, expected_notes = python_answer(model, bird)
        assert_same_prediction(
            answer["predictions"][0], expected, tolerance_of(manifest_json), str(bird)
        )
        assert [f"{n['path']}: {n['reason']}" for n in answer["notes"]] == expected_notes
        assert_shown(phone, answer, classes)


# --- (f) errors are seen --------------------------------------------------------------------


def test_console_errors_and_page_errors_are_caught(
    playwright: Playwright, browser: Browser, site: Site
) -> None:
    """Every test above ends by checking its page reported no error; this shows the check
    sees them."""
    page = open_page(playwright, browser, site.url)
    try:
        page.wait_ready()
        assert page.errors == []
        page.page.evaluate("console.error('something broke')")
        page.page.evaluate("setTimeout(() => { throw new Error('uncaught'); })")
        page.page.wait_for_function("true")
        page.page.wait_for_timeout(100)
        assert any("something broke" in e for e in page.errors), page.errors
        assert any("uncaught" in e for e in page.errors), page.errors
    finally:
        page.close()


def test_the_number_inputs_take_the_exact_double(desktop: EdgePage, model: Model) -> None:
    """A value typed in the form reaches the model as the same double Python scores."""
    bird = {
        "island": "Dream",
        "bill_length_mm": 45.123456789012345,
        "bill_depth_mm": 17.000000000000004,
        "flipper_length_mm": 195.5,
        "body_mass_g": 3999.9999999999995,
        "sex": "female",
    }
    answer, _ = desktop.predict(bird)
    expected, _ = python_answer(model, bird)
    assert answer["predictions"][0]["label"] == expected["label"]
    for name, p in expected["probabilities"].items():
        assert math.isclose(answer["predictions"][0]["probabilities"][name], p, abs_tol=1e-12)

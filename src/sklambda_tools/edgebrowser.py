"""The edge page in a real headless browser: a local static server, Chromium driven by
Playwright, and the page's form filled, clicked and read.

Used by ``tests/integration/test_edge_browser.py`` and ``bench/edge.py``. Chromium is the
system's (``apt-get install chromium``, or ``SKLAMBDA_CHROMIUM`` naming a binary); Playwright's
own browser downloads are never used.

    with serve(bundle_dir) as site, sync_playwright() as p:
        browser = launch(p, find_chromium())
        page = open_page(p, browser, site.url, phone=True)
        page.wait_ready()
        answer, ms = page.predict({"island": "Biscoe", ...})
"""

from __future__ import annotations

import functools
import http.server
import math
import os
import shutil
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Playwright,
    Request,
)

MIME_TYPES = {
    ".mjs": "text/javascript",
    ".js": "text/javascript",
    ".wasm": "application/wasm",
    ".json": "application/json",
    ".html": "text/html",
    ".css": "text/css",
    ".onnx": "application/octet-stream",
    ".png": "image/png",
}
"""What the server says each bundle file is: a module script must be served as JavaScript and
``WebAssembly.instantiateStreaming`` wants ``application/wasm``."""

PHONE_DEVICE = "Pixel 7"
"""Playwright's device descriptor for phone-class runs (viewport, user agent, touch)."""
PHONE_CPU_THROTTLE = 4.0
"""Chrome DevTools' CPU slowdown for phone-class runs (its "mid-tier mobile" preset)."""
LOAD_TIMEOUT_MS = 60_000
_READY_CLOCK = """
new MutationObserver((_, observer) => {
  const state = document.body?.dataset.state;
  if (state === "ready" || state === "failed") {
    window.sklambdaReadyAt = performance.now();
    observer.disconnect();
  }
}).observe(document, { subtree: true, attributes: true, attributeFilter: ["data-state"] });
"""
"""Records when the page leaves ``loading`` (ms since its navigation started)."""
ANSWER_TIMEOUT_MS = 30_000


class PageFailed(Exception):
    """The page did not get ready, or did not answer; the message says what it showed."""


# --- the static server ------------------------------------------------------------------------


class _Handler(http.server.SimpleHTTPRequestHandler):
    extensions_map = MIME_TYPES

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: no line per request on stderr."""


@dataclass
class Site:
    """A bundle served on loopback: its base URL and every path requested, in order."""

    url: str
    requested: list[str] = field(default_factory=list)


@contextmanager
def serve(directory: Path) -> Iterator[Site]:
    """Serve ``directory`` over HTTP on 127.0.0.1 (a free port), in a thread, until the block
    ends. Yields the site (``url`` ends with ``/``)."""
    if not (directory / "index.html").is_file():
        raise FileNotFoundError(f"{directory} holds no index.html (is it an edge bundle?)")
    site = Site(url="")
    lock = threading.Lock()

    class Handler(_Handler):
        def send_head(self) -> Any:
            with lock:
                site.requested.append(self.path)
            return super().send_head()

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=str(directory))
    )
    server.daemon_threads = True
    site.url = f"http://127.0.0.1:{server.server_address[1]}/"
    thread = threading.Thread(target=server.serve_forever, name="edge-static", daemon=True)
    thread.start()
    try:
        yield site
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# --- the browser ------------------------------------------------------------------------------


def find_chromium() -> str | None:
    """The Chromium binary to drive: ``SKLAMBDA_CHROMIUM`` when set (it must exist), else
    ``chromium`` or ``chromium-browser`` on PATH; ``None`` when there is none."""
    named = os.environ.get("SKLAMBDA_CHROMIUM")
    if named:
        found = shutil.which(named)
        return found if found is not None else (named if Path(named).is_file() else None)
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found is not None:
            return found
    return None


def launch(playwright: Playwright, executable: str) -> Browser:
    """Headless Chromium from ``executable`` (no sandbox: containers and CI runners lack the
    namespaces it needs)."""
    return playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])


def _answer_count(page: Page) -> int:
    return int(page.evaluate("Number(document.body.dataset.answered ?? 0)"))


@dataclass
class EdgePage:
    """The edge page open in its own browser context, with what it said on its console."""

    page: Page
    context: BrowserContext
    phone: bool
    errors: list[str] = field(default_factory=list)
    """Console errors and uncaught exceptions, in order."""
    requests: list[str] = field(default_factory=list)
    """Every URL the page requested, in order."""

    def wait_ready(self, timeout_ms: float = LOAD_TIMEOUT_MS) -> None:
        """Wait until the page has loaded the model (``body[data-state]`` leaves ``loading``).

        Raises
        ------
        PageFailed
            The page says ``failed`` (with the error text it shows and what its console said).
        """
        self.page.wait_for_function("document.body.dataset.state !== 'loading'", timeout=timeout_ms)
        state = self.page.evaluate("document.body.dataset.state")
        if state != "ready":
            shown = self.page.inner_text("#model-description")
            raise PageFailed(f"the page is {state!r}: {shown}; console: {self.errors}")

    def ready_ms(self) -> float:
        """Milliseconds from the navigation's start to the page's ``ready`` (after
        ``wait_ready``)."""
        return float(self.page.evaluate("window.sklambdaReadyAt"))

    def fill(self, instance: Mapping[str, Any]) -> None:
        """Put ``instance`` in the form: ``None`` is the empty option (``(missing)``) or an empty
        number input; booleans are ``true``/``false``; numbers as Python writes them."""
        for name, value in instance.items():
            selector = f"#f-{name}"
            tag = self.page.eval_on_selector(selector, "e => e.tagName")
            if tag == "SELECT":
                self.page.select_option(selector, value="" if value is None else _option(value))
            else:
                self.page.fill(selector, "" if value is None else _number(value))

    def click(self, timeout_ms: float = ANSWER_TIMEOUT_MS) -> tuple[dict[str, Any], float]:
        """Press Predict (a tap on a phone) and wait for the answer. Returns the answer object
        (``window.sklambdaLastAnswer``: the API's answer, or ``{message, errors}`` for a
        refusal) and the page's click-to-answer time in ms."""
        before = _answer_count(self.page)
        if self.phone:
            self.page.tap("#predict")
        else:
            self.page.click("#predict")
        try:
            self.page.wait_for_function(
                f"Number(document.body.dataset.answered ?? 0) > {before}", timeout=timeout_ms
            )
        except Exception as exc:
            raise PageFailed(f"no answer after the click; console: {self.errors}") from exc
        answer, ms = self.page.evaluate(
            "[window.sklambdaLastAnswer, window.sklambdaTimings[window.sklambdaTimings.length - 1]]"
        )
        return answer, float(ms)

    def predict(self, instance: Mapping[str, Any]) -> tuple[dict[str, Any], float]:
        """``fill`` then ``click``."""
        self.fill(instance)
        return self.click()

    def shown(self) -> dict[str, Any]:
        """What the page shows of the last answer: the label, each bar's probability text (by
        class, in the page's order), the notes and the refusal's reasons."""
        return self.page.evaluate(
            """() => ({
                label: document.getElementById("label").textContent,
                answerShown: !document.getElementById("answer").hidden,
                bars: [...document.querySelectorAll("#bars .bar")].map((b) => [
                    b.dataset.class, b.querySelector(".p").textContent,
                    b.classList.contains("top")]),
                notes: [...document.querySelectorAll("#notes li")].map((li) => li.textContent),
                refusedShown: !document.getElementById("refused").hidden,
                reasons: [...document.querySelectorAll("#reasons li")].map((li) => li.textContent),
            })"""
        )

    def close(self) -> None:
        self.context.close()


def _option(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"a number input takes a number, not {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"a number input cannot hold {value!r}")
    return repr(value)  # the shortest text that reads back as the same double


def open_page(
    playwright: Playwright,
    browser: Browser,
    url: str,
    *,
    phone: bool = False,
    cpu_throttle: float = PHONE_CPU_THROTTLE,
    viewport: Mapping[str, int] | None = None,
) -> EdgePage:
    """Open ``url`` in a fresh context of ``browser`` (nothing cached), collecting console
    errors, page errors and requests from the start. ``phone``: the ``PHONE_DEVICE`` descriptor
    (viewport, user agent, touch) and the CPU slowed ``cpu_throttle`` times. Does not wait for
    the model: call ``wait_ready``."""
    options: dict[str, Any] = {}
    if phone:
        options = {
            k: v for k, v in playwright.devices[PHONE_DEVICE].items() if k != "default_browser_type"
        }
    elif viewport is not None:
        options["viewport"] = dict(viewport)
    context = browser.new_context(**options)
    page = context.new_page()
    edge = EdgePage(page=page, context=context, phone=phone)

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            edge.errors.append(f"console.error: {message.text}")

    def on_request(request: Request) -> None:
        edge.requests.append(request.url)

    page.add_init_script(_READY_CLOCK)
    page.on("console", on_console)
    page.on("pageerror", lambda error: edge.errors.append(f"page error: {error}"))
    page.on("request", on_request)
    if phone:
        session = context.new_cdp_session(page)
        session.send("Emulation.setCPUThrottlingRate", {"rate": cpu_throttle})
    page.goto(url)
    return edge

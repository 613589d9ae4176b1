"""The report as a reader sees it: a quickstart-size digits study opened in headless Chromium.

Chromium is driven over its DevTools protocol (a websocket, `websocket-client`),
so no browser driver is needed. The test checks what a file-level test cannot:
no console errors, every image decoded, every in-page link lands on its
section, no horizontal scrolling at 1280 px, and the findings in the first
screen. CI (`.ci/run`, with CI set) installs Chromium; elsewhere the test is
skipped when Chromium is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request

import pytest

from nnstudy.cli import main

pytestmark = pytest.mark.slow  # starts a browser

WIDTH, HEIGHT = 1280, 800  # a laptop's first screen
STUDY = """
name = "browser"
description = "A small CNN against an MLP on digits, as the quickstart, smaller."
seeds = [0, 1]
report_epochs = [1]

[dataset]
name = "digits"
subset = 400
test_subset = 150

[model]
kind = "cnn"
channels = [8]
kernel = 3
padding = 1
hidden = [32]

[train]
lr = 0.05
batch_size = 32
epochs = 3

[variants.cnn]

[variants.mlp]
model.kind = "mlp"
model.hidden = [32]

[[claims]]
text = "The CNN is more accurate than the MLP."
source = "a test"
metric = "test_acc"
variant = "cnn"
baseline = "mlp"
direction = "greater"
"""


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("Chromium is missing: apt-get install -y chromium (.ci/run does this)")
        pytest.skip("Chromium is not installed (apt-get install -y chromium); CI runs this test")
    return path


class DevTools:
    """A minimal DevTools-protocol client for one page: commands by id, events kept in order."""

    def __init__(self, url: str):
        import websocket  # websocket-client

        self.ws = websocket.create_connection(url, timeout=20, suppress_origin=True)
        self.events: list[dict] = []
        self._id = 0

    def call(self, method: str, **params) -> dict:
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self._id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def wait_for(self, method: str, timeout: float = 20) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for i, event in enumerate(self.events):
                if event.get("method") == method:
                    return self.events.pop(i)
            self.events.append(json.loads(self.ws.recv()))
        raise TimeoutError(method)

    def js(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(result["exceptionDetails"])
        return result["result"].get("value")

    def open(self, url: str) -> None:
        self.call("Page.navigate", url=url)
        self.wait_for("Page.loadEventFired")

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and browser log errors (failed loads) so far."""
        out = []
        for e in self.events:
            method, params = e.get("method"), e.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                out.append(str(params.get("args")))
            elif method == "Runtime.exceptionThrown":
                out.append(str(params.get("exceptionDetails")))
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                out.append(params["entry"].get("text", ""))
        return out


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Headless Chromium with a 1280 x 800 page, and the study's output folder."""
    chromium = _chromium()
    if not os.environ.get("CI"):  # in CI the test extra installs it, and its absence must fail
        pytest.importorskip("websocket")
    tmp = tmp_path_factory.mktemp("browser")
    (tmp / "browser.toml").write_text(STUDY)
    out = tmp / "out"
    assert main(["run", str(tmp / "browser.toml"), "--out", str(out), "--cache-dir", str(tmp / "cache"), "--quiet",
                 "--executor", "local"]) == 0
    profile = tmp / "profile"
    proc = subprocess.Popen(
        [chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
         f"--user-data-dir={profile}", "--remote-debugging-port=0", f"--window-size={WIDTH},{HEIGHT}",
         "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file = profile / "DevToolsActivePort"  # Chromium writes the port it picked here
        deadline = time.monotonic() + 20
        while not (port_file.is_file() and port_file.read_text().strip()) and time.monotonic() < deadline:
            time.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10))
        page = next(t for t in targets if t["type"] == "page")
        tools = DevTools(page["webSocketDebuggerUrl"])
        for domain in ("Page", "Runtime", "Log"):
            tools.call(f"{domain}.enable")
        tools.call("Emulation.setDeviceMetricsOverride", width=WIDTH, height=HEIGHT, deviceScaleFactor=1, mobile=False)
        yield tools, out
        tools.ws.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_report_in_a_browser(browser):
    tools, out = browser
    tools.open((out / "browser" / "report.html").as_uri())
    assert tools.errors() == []

    images = tools.js("Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth])")
    assert len(images) >= 5  # findings figure, curves, samples, confusion matrices, mechanisms
    assert [alt for alt, complete, width in images if not (complete and width > 0)] == []

    # No horizontal scrolling: wide tables scroll inside their own box, not the page.
    assert tools.js("document.documentElement.scrollWidth") <= WIDTH

    # The answer first: the findings block starts within the first screen, before the contents.
    top = tools.js("window.scrollTo(0, 0); document.getElementById('findings').getBoundingClientRect().top")
    assert 0 < top < HEIGHT - 200
    assert tools.js("document.querySelector('.findings').compareDocumentPosition("
                    "document.querySelector('nav')) & Node.DOCUMENT_POSITION_FOLLOWING") != 0
    rows = tools.js("Array.from(document.querySelectorAll('.findings tbody tr')).map(r => r.innerText)")
    assert len(rows) == 3 and "mlp vs cnn, test accuracy" in rows[0] and "The CNN is more accurate" in rows[2]

    # Every in-page link (contents, findings) lands on its section: the target at the top of the
    # screen, or the page scrolled to its end when the target is too near the end to reach the top.
    links = tools.js("Array.from(document.querySelectorAll('a[href^=\"#\"]')).map(a => a.getAttribute('href'))")
    assert "#findings" in links and "#claims" in links and "#epoch-3" in links
    for i, href in enumerate(links):
        landed = tools.js(f"""new Promise(done => {{
            window.scrollTo(0, 0);
            document.querySelectorAll('a[href^="#"]')[{i}].click();
            requestAnimationFrame(() => {{
                const target = document.getElementById(decodeURIComponent('{href[1:]}'));
                if (!target) return done(null);
                const end = document.documentElement.scrollHeight - window.innerHeight;
                done({{top: target.getBoundingClientRect().top, atEnd: window.scrollY >= end - 1}});
            }});
        }})""")
        assert landed is not None, f"{href}: no element with that id"
        assert abs(landed["top"]) <= 2 or (landed["atEnd"] and 0 <= landed["top"] < HEIGHT), (href, landed)
    assert tools.errors() == []


def test_index_in_a_browser(browser):
    tools, out = browser
    tools.open((out / "index.html").as_uri())
    assert tools.js("document.documentElement.scrollWidth") <= WIDTH
    link = tools.js("document.querySelector('a[href$=\"report.html\"]').href")
    assert link == (out / "browser" / "report.html").as_uri()
    tools.open(link)
    assert tools.js("document.title").startswith("browser")
    assert tools.errors() == []

"""A real headless browser for tests: Debian's Chromium driven by its chromedriver over the
WebDriver protocol (plain HTTP on loopback; no client library), with a fresh profile and every
background fetch turned off, so a page is seen as a newcomer's browser shows it, offline."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tests.helpers import free_port, wait_for

__all__ = ["ARGS", "Browser", "browser"]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1000,3000",
)


class Browser:
    """One WebDriver session."""

    def __init__(self, base: str, session: str) -> None:
        self._base = f"{base}/session/{session}"

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        return _request(method, f"{self._base}{path}", body)

    def open(self, url: str) -> None:
        self._call("POST", "/url", {"url": url})

    def run(self, script: str) -> Any:
        """The value of a script run in the page (``return ...``)."""
        return self._call("POST", "/execute/sync", {"script": script, "args": []})

    def screenshot(self) -> bytes:
        return base64.b64decode(self._call("GET", "/screenshot"))


def _request(method: str, url: str, body: dict[str, Any] | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as answer:
        return json.loads(answer.read())["value"]


def _ready(base: str) -> bool:
    try:
        return bool(_request("GET", f"{base}/status")["ready"])
    except OSError:
        return False


@contextmanager
def browser() -> Iterator[Browser]:
    """A session of headless Chromium with a profile of its own, ended and removed after."""
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    assert not missing, (
        f"{' and '.join(missing)} not found: the report's test needs Debian's Chromium and its "
        "WebDriver (apt-get install chromium chromium-driver; .ci/run installs them)"
    )
    port = free_port()
    profile = tempfile.mkdtemp(prefix="syncstream-chromium-")
    driver = subprocess.Popen(
        [CHROMEDRIVER, f"--port={port}", "--allowed-ips=127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _ready(base), "chromedriver to listen", 30)
        options = {"binary": CHROMIUM, "args": [*ARGS, f"--user-data-dir={profile}"]}
        capabilities = {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": options}}
        session = _request("POST", f"{base}/session", {"capabilities": capabilities})["sessionId"]
        try:
            yield Browser(base, session)
        finally:
            _request("DELETE", f"{base}/session/{session}")
    finally:
        driver.terminate()
        driver.wait(timeout=30)
        shutil.rmtree(profile, ignore_errors=True)

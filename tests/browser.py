"""A small W3C WebDriver client (urllib only) that drives the system's headless Chromium through ``chromedriver``.

Debian: ``apt-get install -y chromium chromium-driver`` (what ``.ci/run`` installs). Tests that need it skip with the
reason when either is missing.
"""

from __future__ import annotations

import base64
import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ELEMENT = "element-6066-11e4-a52f-4ad5c7a8f2f7"


def missing() -> str | None:
    """Why no browser test can run here, or ``None``."""
    for tool in ("chromium", "chromedriver"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (Debian: apt-get install -y chromium chromium-driver)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Browser:
    """One headless Chromium session. ``with Browser() as b: b.open(path); b.js("return 1")``."""

    def __init__(self, width: int = 1280, height: int = 1000) -> None:
        self.port = _free_port()
        self.driver = subprocess.Popen([shutil.which("chromedriver"), f"--port={self.port}"],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.base = f"http://127.0.0.1:{self.port}"
        deadline = time.time() + 20
        while True:
            try:
                self._call("GET", "/status")
                break
            except (urllib.error.URLError, ConnectionError):
                if time.time() > deadline:
                    self.driver.kill()
                    raise RuntimeError("chromedriver did not start") from None
                time.sleep(0.1)
        caps = {"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {"binary": shutil.which("chromium"), "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={width},{height}", "--allow-file-access-from-files"]},
        }}}
        self.session = self._call("POST", "/session", caps)["sessionId"]

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                return json.loads(response.read() or b"{}").get("value")
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"WebDriver {method} {path}: {exc.read().decode()[:500]}") from None

    def _session(self, method: str, path: str, body: Any = None) -> Any:
        return self._call(method, f"/session/{self.session}{path}", body)

    def open(self, path: str | Path) -> None:
        self._session("POST", "/url", {"url": Path(path).resolve().as_uri()})

    def js(self, script: str, *args: Any) -> Any:
        return self._session("POST", "/execute/sync", {"script": script, "args": list(args)})

    def find(self, css: str) -> str:
        found = self._session("POST", "/element", {"using": "css selector", "value": css})
        return found.get(ELEMENT) or next(iter(found.values()))

    def click(self, css: str) -> None:
        self._session("POST", f"/element/{self.find(css)}/click", {})

    def select(self, css: str, value: str) -> None:
        """Choose ``value`` in a ``<select>`` the way a user does (its change event fires)."""
        self.click(f"{css} option[value='{value}']")

    def console_errors(self) -> list[str]:
        entries = self._call("POST", f"/session/{self.session}/se/log", {"type": "browser"}) or []
        return [e["message"] for e in entries if e.get("level") == "SEVERE"]

    def screenshot(self, path: str | Path) -> Path:
        Path(path).write_bytes(base64.b64decode(self._session("GET", "/screenshot")))
        return Path(path)

    def close(self) -> None:
        try:
            self._session("DELETE", "")
        finally:
            self.driver.terminate()
            self.driver.wait(timeout=20)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

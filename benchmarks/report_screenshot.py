"""Render a report in headless Chromium, collect console errors, take a screenshot.

    python benchmarks/report_screenshot.py report.html --out report.png

Talks to Chromium over the DevTools protocol on a pipe (no network port):
opens the page, waits for the load event, checks that every image decoded,
and records console messages, JavaScript exceptions and log entries (failed
loads). Exits 1 if there is any error, or an image failed; prints a JSON summary.
Needs Debian's `chromium` package (apt-get install chromium).
"""

from __future__ import annotations

import argparse
import base64
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         "--remote-debugging-pipe", "--hide-scrollbars"]


class Browser:
    """A Chromium process driven through fds 3 (commands) and 4 (answers)."""

    def __init__(self, binary: str, profile: str, width: int) -> None:
        to_browser_r, self.to_browser = os.pipe()
        self.from_browser, from_browser_w = os.pipe()
        # Move the child's ends out of the way, so dup2 onto 3 and 4 cannot
        # clobber one with the other; 3 and 4 are kept open in the child.
        child_r = fcntl.fcntl(to_browser_r, fcntl.F_DUPFD, 100)
        child_w = fcntl.fcntl(from_browser_w, fcntl.F_DUPFD, 100)
        os.close(to_browser_r)
        os.close(from_browser_w)

        def set_fds() -> None:
            os.dup2(child_r, 3)
            os.dup2(child_w, 4)

        self.process = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},900",
             "about:blank"], pass_fds=(3, 4, child_r, child_w), preexec_fn=set_fds,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(child_r)
        os.close(child_w)
        self.buffer = b""
        self.next_id = 0
        self.events: list[dict] = []

    def send(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = 30.0) -> dict:
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self.to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            answer = self.receive(deadline - time.monotonic())
            if answer.get("id") == self.next_id:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                return answer.get("result", {})
        raise TimeoutError(method)

    def receive(self, timeout: float) -> dict:
        import select

        while b"\0" not in self.buffer:
            ready, _, _ = select.select([self.from_browser], [], [], max(timeout, 0.01))
            if not ready:
                return {}
            chunk = os.read(self.from_browser, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed the pipe")
            self.buffer += chunk
        raw, self.buffer = self.buffer.split(b"\0", 1)
        message = json.loads(raw)
        if "method" in message:
            self.events.append(message)
        return message

    def wait_for(self, method: str, timeout: float = 30.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(e["method"] == method for e in self.events):
                return next(e for e in self.events if e["method"] == method)
            self.receive(deadline - time.monotonic())
        raise TimeoutError(method)

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=5)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def problems(events: list[dict]) -> list[str]:
    found = []
    for event in events:
        params = event.get("params", {})
        if event["method"] == "Runtime.exceptionThrown":
            found.append("exception: " + params["exceptionDetails"].get("text", ""))
        elif event["method"] == "Runtime.consoleAPICalled" and params.get("type") in (
                "error", "assert", "warning"):
            found.append(f"console.{params['type']}: " + " ".join(
                str(a.get("value", a.get("description", ""))) for a in params.get("args", [])))
        elif event["method"] == "Log.entryAdded" and params["entry"]["level"] in ("error",
                                                                                "warning"):
            found.append(f"log {params['entry']['level']}: {params['entry'].get('text', '')}")
    return found


def shoot(page: Path, out: Path, width: int, binary: str) -> dict:
    with tempfile.TemporaryDirectory() as profile:
        browser = Browser(binary, profile, width)
        try:
            target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
            session = browser.send("Target.attachToTarget", {"targetId": target,
                                                             "flatten": True})["sessionId"]
            for domain in ("Page", "Runtime", "Log"):
                browser.send(f"{domain}.enable", session=session)
            browser.send("Page.navigate", {"url": page.resolve().as_uri()}, session=session)
            browser.wait_for("Page.loadEventFired")
            check = browser.send("Runtime.evaluate", {"returnByValue": True, "expression": (
                "JSON.stringify({images: document.images.length, broken: Array.from("
                "document.images).filter(i => !(i.complete && i.naturalWidth > 0)).length, "
                "external: Array.from(document.querySelectorAll('[src],[href]')).filter(e => "
                "/^https?:/.test(e.getAttribute('src') || e.getAttribute('href'))).length, "
                "height: document.documentElement.scrollHeight})")}, session=session)
            page_facts = json.loads(check["result"]["value"])
            browser.receive(0.5)  # let late console messages arrive
            shot = browser.send("Page.captureScreenshot", {
                "format": "png", "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": width, "height": page_facts["height"],
                         "scale": 1}}, session=session)
            out.write_bytes(base64.b64decode(shot["data"]))
        finally:
            browser.close()
    return {"page": str(page), "screenshot": str(out), **page_facts,
            "errors": problems(browser.events)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("page", type=Path)
    parser.add_argument("--out", type=Path, default=Path("report.png"))
    parser.add_argument("--width", type=int, default=1200)
    parser.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    args = parser.parse_args()
    result = shoot(args.page, args.out, args.width, args.chromium)
    print(json.dumps(result, indent=2))
    return 1 if result["errors"] or result["broken"] or result["external"] else 0


if __name__ == "__main__":
    sys.exit(main())

"""Headless chromium driven over the DevTools protocol, for tests that read a
page's rendered state (flot draws on a canvas: its data is read with
JavaScript, not from the HTML).

No package: chromium's --remote-debugging-pipe speaks the protocol as
NUL-terminated JSON on file descriptors 3 (commands in) and 4 (replies and
events out), as Puppeteer and Playwright use it.  Only Debian's chromium is
needed, no driver and no browser download."""
import base64
import json
import os
import select
import subprocess
import sys
import time

# argv: fd for 3, fd for 4, the program and its arguments.  Both fds go high
# first, so that neither is overwritten when the other lands on 3 or 4.
_ON_FDS_3_AND_4 = """import fcntl, os, sys
high = [fcntl.fcntl(int(fd), fcntl.F_DUPFD, 10) for fd in sys.argv[1:3]]
os.dup2(high[0], 3)
os.dup2(high[1], 4)
os.execv(sys.argv[3], sys.argv[3:])
"""


class BrowserError(Exception):
    pass


class Chromium:
    """One headless chromium with one page.  `requests` collects the URL of
    every request the page made (Network.requestWillBeSent)."""

    def __init__(self, executable, profile_dir, width=1366, height=768, timeout=30):
        self.timeout = timeout
        self.requests = []
        self._next_id = 0
        self._buffer = b""
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        # The browser must not inherit the sanitizer runtime the CI pass preloads.
        env = {k: v for k, v in os.environ.items()
               if k not in ("LD_PRELOAD", "ASAN_OPTIONS", "UBSAN_OPTIONS")}
        browser = [executable, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                   "--remote-debugging-pipe", f"--user-data-dir={profile_dir}",
                   f"--window-size={width},{height}", "about:blank"]
        # A Python trampoline puts the pipes on descriptors 3 and 4 and execs
        # the browser (preexec_fn would do it, but is unsafe while the test's
        # server thread runs).
        self.process = subprocess.Popen(
            [sys.executable, "-c", _ON_FDS_3_AND_4, str(to_browser_r), str(from_browser_w),
             *browser], pass_fds=(to_browser_r, from_browser_w), env=env,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_browser_r)
        os.close(from_browser_w)
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target,
                                 flatten=True)["sessionId"]
        for domain in ("Page", "Network", "Runtime"):
            self.call(f"{domain}.enable", session=True)
        self.call("Emulation.setDeviceMetricsOverride", session=True, width=width,
                  height=height, deviceScaleFactor=1, mobile=False)

    def _send(self, method, params, session):
        self._next_id += 1
        msg = {"id": self._next_id, "method": method, "params": params}
        if session:
            msg["sessionId"] = self.session
        os.write(self._to_browser, json.dumps(msg).encode() + b"\0")
        return self._next_id

    def _read_message(self, deadline):
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_browser], [], [], left)[0]:
                raise BrowserError("chromium did not answer in time")
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise BrowserError(f"chromium exited ({self.process.poll()})")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        msg = json.loads(raw)
        if msg.get("method") == "Network.requestWillBeSent":
            self.requests.append(msg["params"]["request"]["url"])
        return msg

    def call(self, method, session=False, **params):
        """Send a command and return its result; events met meanwhile are kept."""
        wanted = self._send(method, params, session)
        deadline = time.monotonic() + self.timeout
        while True:
            msg = self._read_message(deadline)
            if msg.get("id") == wanted:
                if "error" in msg:
                    raise BrowserError(f"{method}: {msg['error'].get('message')}")
                return msg.get("result", {})

    def evaluate(self, expression):
        """The value of a JavaScript expression in the page (awaited if a promise)."""
        result = self.call("Runtime.evaluate", session=True, expression=expression,
                           returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            thrown = result["exceptionDetails"].get("exception", {}).get("description")
            raise BrowserError(f"{expression[:60]}...: {thrown}")
        return result["result"].get("value")

    def goto(self, url):
        self.call("Page.navigate", session=True, url=url)

    def wait_for(self, expression, what, timeout=None):
        """Poll a JavaScript expression until it is truthy; return its value.
        An exception counts as not yet: the page's scripts may still load."""
        deadline = time.monotonic() + (timeout or self.timeout)
        last_error = None
        while True:
            try:
                value = self.evaluate(expression)
                if value:
                    return value
            except BrowserError as e:
                last_error = e
            if time.monotonic() > deadline:
                raise BrowserError(f"timed out waiting for {what}"
                                   + (f" (last: {last_error})" if last_error else ""))
            time.sleep(0.1)

    def screenshot(self, path):
        data = self.call("Page.captureScreenshot", session=True, format="png")["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))

    def close(self):
        try:
            self._send("Browser.close", {}, False)
            self.process.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.process.kill()
            self.process.wait()
        finally:
            os.close(self._to_browser)
            os.close(self._from_browser)

"""Wait until an HTTP URL answers 200: the one readiness check of servers, tests and benchmarks."""

from __future__ import annotations

import time
import urllib.error
import urllib.request


class NotReady(RuntimeError):
    """The URL did not answer 200 in time, or the process that should serve it exited."""


def probe(url: str, timeout: float = 2.0) -> tuple[int, bytes] | None:
    """(status, body) when `url` answers 200; None when it refuses, fails or answers otherwise."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return (r.status, r.read()) if r.status == 200 else None
    except (urllib.error.URLError, OSError, ValueError):
        return None


def wait_for_url(url: str, timeout: float, process=None, interval: float = 0.25,
                 what: str | None = None) -> tuple[int, bytes]:
    """Poll `url` until it answers 200 and return (status, body).

    process: a subprocess.Popen that serves it; if it exits first, NotReady says so at once instead
    of waiting out the timeout. what: the server's name in the error messages.
    """
    name = what or url
    deadline = time.monotonic() + timeout
    while True:
        if process is not None and process.poll() is not None:
            raise NotReady(f"{name} exited with code {process.returncode} before {url} answered")
        answer = probe(url)
        if answer is not None:
            return answer
        if time.monotonic() >= deadline:
            raise NotReady(f"{name} did not answer {url} within {timeout:.0f} s")
        time.sleep(interval)

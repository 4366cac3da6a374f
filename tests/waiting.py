"""Bounded waiting for tests that start servers and tasks."""

from __future__ import annotations

import time
import urllib.request


def wait_for(predicate, timeout=20.0, interval=0.1):
    """The predicate's first truthy value, polled until `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


def http_ok(url):
    """True when a GET of `url` answers 200 within 2 s."""
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False

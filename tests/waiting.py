"""Bounded waiting for tests that start servers and tasks."""

from __future__ import annotations

import urllib.request

from lakehub.waiting import wait_for as _wait_for


def wait_for(predicate, timeout=20.0, interval=0.1, what="condition", detail=None):
    """The predicate's first truthy value, polled every `interval` s until `timeout` s have passed;
    then an AssertionError naming `what`, the last value seen and `detail()` (a log tail...)."""
    return _wait_for(predicate, timeout, interval, what, detail, error=AssertionError)


def http_ok(url):
    """True when a GET of `url` answers 200 within 2 s."""
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False

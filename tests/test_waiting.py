"""lakehub.waiting: the one bounded poll loop (tests/waiting.py is built on it)."""

from __future__ import annotations

import threading
import time

import pytest

from lakehub.errors import LakehubError
from lakehub.waiting import tries, wait_for


def test_tries_ends_at_the_deadline_with_a_last_try_there():
    started = time.monotonic()
    seen = [time.monotonic() - started for _ in tries(0.5, interval=0.2)]
    assert 2 <= len(seen) <= 4 and seen[0] < 0.2  # at once, 0.2, 0.4 (fewer when sleeps overrun), the deadline
    assert 0.45 < seen[-1] < 2


def test_tries_stops_when_the_event_is_set():
    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()
    started = time.monotonic()
    assert len(list(tries(30, interval=5, stop=stop))) == 1
    assert time.monotonic() - started < 2
    assert list(tries(30, stop=stop)) == []  # already set: no try at all


def test_wait_for_returns_the_first_truthy_value():
    values = iter([0, None, "ready", "later"])
    assert wait_for(lambda: next(values), timeout=5, interval=0.01) == "ready"


def test_wait_for_names_what_the_last_value_and_the_detail():
    with pytest.raises(LakehubError) as err:
        wait_for(lambda: [], timeout=0.2, interval=0.05, what="the hub", detail=lambda: "log tail", error=LakehubError)
    assert str(err.value) == "the hub not met within 0 s (last: [])\nlog tail"
    with pytest.raises(TimeoutError):
        wait_for(lambda: False, timeout=0.1)

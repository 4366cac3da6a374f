"""Bounded polling: the one loop for everything that waits for something to become true.

`tries` drives a loop whose body decides (break or return on success, raise on a final failure;
the for loop's `else` is the timeout, with the caller's own message); `wait_for` polls a
predicate and raises when the time is up. tests/waiting.py is `wait_for` with AssertionError.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any


def tries(timeout: float, interval: float = 0.1, stop: threading.Event | None = None) -> Iterator[int]:
    """Yield 1, 2, ...: the first at once, each next one `interval` s after the previous body
    ended, the last at the deadline; stop after `timeout` s or once `stop` is set."""
    deadline = time.monotonic() + timeout
    n = 0
    while stop is None or not stop.is_set():
        n += 1
        yield n
        left = deadline - time.monotonic()
        if left <= 0:
            return
        if stop is not None:
            stop.wait(min(interval, left))
        else:
            time.sleep(min(interval, left))


def wait_for(
    predicate: Callable[[], Any],
    timeout: float = 20.0,
    interval: float = 0.1,
    what: str = "condition",
    detail: Callable[[], str] | None = None,
    error: type[Exception] = TimeoutError,
    stop: threading.Event | None = None,
) -> Any:
    """The predicate's first truthy value, polled every `interval` s for `timeout` s; then
    `error` naming `what`, the last value seen and `detail()` (a log tail, ...)."""
    last = None
    for _ in tries(timeout, interval, stop):
        last = predicate()
        if last:
            return last
    more = f"\n{detail()}" if detail else ""
    raise error(f"{what} not met within {timeout:.0f} s (last: {last!r}){more}")

"""argparse types shared by several commands: a bad value is argparse's one-line usage error."""

from __future__ import annotations

import argparse
import math


def positive_seconds(text: str) -> float:
    """A finite number of seconds above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text} must be a number of seconds above 0, e.g. 600")
    return value


def whole_number(text: str, low: int, high: int, not_number: str, outside: str) -> int:
    """A whole number from `low` to `high`; else "'TEXT' is not <not_number>" or "VALUE <outside>"."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {not_number}") from None
    if not low <= value <= high:
        raise argparse.ArgumentTypeError(f"{value} {outside}")
    return value

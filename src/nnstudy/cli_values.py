"""The values the command line's options take (argparse `type=` functions): each checks one option's text and
says in one line what is wrong and how to write it (argparse turns it into `nnstudy: error: ...`, exit 2)."""

from __future__ import annotations

import argparse


def seeds(text: str) -> list[int]:
    try:
        values = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers, e.g. 0,1,2") from None
    if not values:
        raise argparse.ArgumentTypeError("give at least one seed, e.g. --seeds 0,1,2")
    return values


def positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be >= 1")
    return value


def number(text: str, positive: bool, hint: str = "") -> float:
    """A finite number >= 0 (> 0 when `positive`), with a one-line message otherwise."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number{hint}") from None
    if not (0 < value if positive else 0 <= value) or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text} must be a number {'>' if positive else '>='} 0{hint}")
    return value


def amount(text: str) -> float:
    """A resource amount for Ray: a number >= 0, fractions allowed (two jobs at 0.5 GPU share one)."""
    return number(text, positive=False)


def looks(text: str) -> list[int]:
    values = seeds(text)
    from nnstudy.config.schema import LOOKS_RULE, looks_increase

    if not looks_increase(values):
        raise argparse.ArgumentTypeError(f"{text!r}: {LOOKS_RULE}, e.g. 3,5,8,12,20")
    return values


def fraction(text: str) -> float:
    """The smallest difference worth knowing: a number > 0 in the metric's unit."""
    return number(text, positive=True, hint=", e.g. 0.002 for 0.2 pp of accuracy")

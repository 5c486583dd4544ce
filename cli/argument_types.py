"""Argument types of the command tree: values argparse checks before any handler runs."""

from __future__ import annotations

import argparse

__all__ = ["positive", "scenario_numbers", "user_counts"]


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def scenario_numbers(text: str) -> list[int]:
    numbers = _comma_separated(text, "1,3,5")
    if not all(1 <= number <= 8 for number in numbers):
        raise argparse.ArgumentTypeError(f"scenarios are numbered 1 to 8, got {text!r}")
    return numbers


def user_counts(text: str) -> list[int]:
    counts = _comma_separated(text, "100000,300000")
    if min(counts) < 1:
        raise argparse.ArgumentTypeError(f"user counts are at least 1, got {text!r}")
    return counts


def _comma_separated(text: str, example: str) -> list[int]:
    try:
        numbers = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        numbers = []
    if not numbers:
        raise argparse.ArgumentTypeError(f"expected numbers like {example}, got {text!r}")
    return numbers

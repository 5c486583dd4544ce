"""The circuit breaker over Triton outages, on a clock the test moves."""

from __future__ import annotations

import math

import pytest

from stream.circuit import CircuitBreaker
from tests.doubles import Clock

pytestmark = pytest.mark.unit


def test_failures_open_the_circuit_only_once_they_have_lasted() -> None:
    clock, changes = Clock(), []
    circuit = CircuitBreaker(2.0, 1.0, on_change=changes.append, clock=clock)
    assert circuit.may_call() and not circuit.failed()
    clock.now += 1.9
    assert not circuit.failed()
    clock.now += 0.1
    assert circuit.failed() and circuit.is_open and changes == [True]


def test_a_success_in_between_starts_the_count_again() -> None:
    clock = Clock()
    circuit = CircuitBreaker(2.0, 1.0, clock=clock)
    circuit.failed()
    clock.now += 1.5
    circuit.succeeded()
    clock.now += 1.0
    assert not circuit.failed()


def test_an_open_circuit_lets_one_call_through_per_probe_interval_and_closes_on_its_success() -> None:
    clock, changes = Clock(), []
    circuit = CircuitBreaker(0.0, 1.0, on_change=changes.append, clock=clock)
    assert circuit.failed()
    assert not circuit.may_call()
    clock.now += 1.0
    assert circuit.may_call()  # the probe
    assert not circuit.may_call()  # the others keep taking the fallback meanwhile
    assert circuit.failed()  # the probe failed: still open, next probe one interval later
    clock.now += 0.5
    assert not circuit.may_call()
    clock.now += 0.5
    assert circuit.may_call()
    circuit.succeeded()
    assert not circuit.is_open and circuit.may_call() and circuit.may_call()
    assert changes == [True, False]


def test_without_a_fallback_the_circuit_never_opens() -> None:
    clock = Clock()
    circuit = CircuitBreaker(math.inf, 1.0, clock=clock)
    circuit.failed()
    clock.now += 1e9
    assert not circuit.failed() and circuit.may_call()

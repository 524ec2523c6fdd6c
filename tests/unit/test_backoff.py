"""Exponential backoff with equal jitter."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from celery_svcjwt.backoff import backoff_delay


@pytest.mark.parametrize("failures", [0, -1])
def test_no_failure_no_wait(failures):
    assert backoff_delay(failures, base=1.0, cap=60.0, rand=0.9) == 0.0


@pytest.mark.parametrize(("failures", "ceiling"), [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (6, 32.0)])
def test_ceiling_doubles_and_delay_lies_in_its_upper_half(failures, ceiling):
    assert backoff_delay(failures, base=1.0, cap=60.0, rand=0.0) == ceiling / 2
    assert backoff_delay(failures, base=1.0, cap=60.0, rand=0.5) == ceiling * 0.75
    assert backoff_delay(failures, base=1.0, cap=60.0, rand=0.999999) == pytest.approx(ceiling, rel=1e-5)


@pytest.mark.parametrize("failures", [7, 8, 20, 1000, 10**9])
def test_capped(failures):
    assert backoff_delay(failures, base=1.0, cap=60.0, rand=0.0) == 30.0
    assert backoff_delay(failures, base=1.0, cap=60.0, rand=0.999999) == pytest.approx(60.0, rel=1e-5)


def test_base_scales_the_ceiling():
    assert backoff_delay(3, base=0.25, cap=60.0, rand=0.0) == 0.5


def test_jitter_spreads_a_fleet():
    delays = {backoff_delay(5, base=1.0, cap=60.0, rand=r / 10) for r in range(10)}
    assert len(delays) == 10


@given(
    failures=st.integers(1, 10**6),
    base=st.floats(0.001, 100),
    cap=st.floats(0.001, 1e5),
    rand=st.floats(0, 1, exclude_max=True),
)
def test_bounds(failures, base, cap, rand):
    ceiling = min(cap, base * 2.0 ** (failures - 1)) if failures < 1000 else cap
    delay = backoff_delay(failures, base, cap, rand)
    assert ceiling / 2 <= delay <= ceiling
    assert delay <= cap


@given(failures=st.integers(1, 200), rand=st.floats(0, 1, exclude_max=True))
def test_never_shrinks_as_failures_grow(failures, rand):
    assert backoff_delay(failures + 1, 1.0, 60.0, rand) >= backoff_delay(failures, 1.0, 60.0, rand)

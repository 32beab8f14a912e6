"""The suite's ``xdist_group`` marks take effect (tests/conftest.py, tests/training/test_multiprocess.py).

pytest 9.2 derives a test's node id from a field pytest-xdist 3.8 does not set, so every group was silently
split across the workers (each building the group's shared fixtures again). constraints.txt pins pytest 9.1.1;
this test fails if a version pair breaks grouping again.
"""

from __future__ import annotations

import os

import pytest


@pytest.mark.xdist_group("grouping_check")
def test_xdist_group_marks_take_effect(request):
    if os.environ.get("PYTEST_XDIST_WORKER") is None:
        pytest.skip("runs under pytest -n (xdist)")
    assert request.node.nodeid.endswith("@grouping_check"), request.node.nodeid

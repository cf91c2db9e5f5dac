"""Fixtures for worker tests (the sandbox is the shared one in ``tests/conftest.py``)."""

from __future__ import annotations

import pytest

from tests.worker.helpers import kill_stray_workers


@pytest.fixture(autouse=True)
def no_stray_workers():
    """A failing test must not leave worker processes running behind it."""
    yield
    kill_stray_workers()

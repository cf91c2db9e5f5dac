"""pytest plugin for mutation runs: a mutant's tests run fastest first.

mutmut runs every test that reaches the mutated function, with ``-x``: the first failure
kills the mutant and ends the run. It passes the tests in no particular order, so a mutant
of the worker's loop, which all ~150 worker tests reach, often waited through seconds of
retry and pacing tests before the 0.1 s test that catches it. With the durations mutmut
measured in its stats run (in this process: mutmut forks every run from its own), the
cheap tests come first. Killed mutants cost a fraction of the time; survivors cost the same.

pytest-django's order stays: tests in a transaction, then transactional ones (they empty the
tables), then those without the database; the sort is within each group.

Loaded by ``scripts/mutation.sh`` only (``-p devtools.testing.fastest_first``); outside a
mutant's run (the stats and clean runs, or no mutmut at all) it leaves the order alone.
"""

from __future__ import annotations

import os

import pytest


def _durations() -> dict[str, float]:
    if "__mutmut_" not in os.environ.get("MUTANT_UNDER_TEST", ""):
        return {}
    try:
        from mutmut.state import state
    except ImportError:  # not under mutmut
        return {}
    return dict(state().duration_by_test)


def _django_group(item: pytest.Item) -> int:
    """pytest-django's order (``pytest_django.plugin.pytest_collection_modifyitems``), for function tests."""
    marker = item.get_closest_marker("django_db")
    fixtures = getattr(item, "fixturenames", ())
    transactional = "transactional_db" in fixtures or bool(
        marker and (marker.kwargs.get("transaction") or marker.kwargs.get("reset_sequences"))
    )
    if transactional:
        return 1
    return 0 if marker or "db" in fixtures else 2


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    durations = _durations()
    if durations:
        # sort() is stable: tests with the same (or no) recorded time keep pytest's order.
        items.sort(key=lambda item: (_django_group(item), durations.get(item.nodeid, float("inf"))))

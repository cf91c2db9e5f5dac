"""A private Sentinel deployment (master, replica, three sentinels with a password) for the module."""

from __future__ import annotations

import pytest

from crmbridge.redis_io.connection import reset_clients
from devtools.testing.sentinel import MASTER_NAME, NOWHERE, SentinelCluster

SENTINEL_PASSWORD = "sentinel-Pa55-word"


@pytest.fixture(scope="module")
def cluster():
    deployment = SentinelCluster(sentinel_password=SENTINEL_PASSWORD).start()
    yield deployment
    deployment.cleanup()


@pytest.fixture
def via_sentinel(cluster, settings):
    """The app's settings pointed at ``cluster`` through its sentinels only."""
    settings.REDIS_SENTINELS = [("127.0.0.1", s.port) for s in cluster.sentinels]
    settings.REDIS_SENTINEL_MASTER = MASTER_NAME
    settings.REDIS_SENTINEL_PASSWORD = SENTINEL_PASSWORD
    settings.REDIS_URL = NOWHERE
    reset_clients()
    yield cluster
    reset_clients()

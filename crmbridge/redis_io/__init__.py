"""Redis: the connection and every key the project uses.

* ``streams.py``    key names (streams, group, everything under ``REDIS_STREAM_PREFIX``)
* ``connection.py`` the one client factory (single Redis or Sentinel), its timeouts, ``describe_redis``
* ``topology.py``   "single Redis", or the master, replicas and sentinels as the sentinels see them
* ``telemetry.py``  what workers record (heartbeats, per-minute counts, last success/failure)
                    and the one reader of each record
"""

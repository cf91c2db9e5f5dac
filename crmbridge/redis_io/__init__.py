"""Redis: the connection and every key the project uses.

* ``streams.py``    key names (streams, group, everything under ``REDIS_STREAM_PREFIX``)
* ``connection.py`` the shared client, its timeouts, ``describe_redis``
* ``telemetry.py``  what workers record (heartbeats, per-minute counts, last success/failure)
                    and the one reader of each record
"""

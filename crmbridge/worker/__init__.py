"""The Bitrix worker: ``python manage.py run_bitrix_worker``.

Read in this order:

* ``runner.py``          the loop: signals, heartbeat, pause, maintenance steps
* ``stream_consumer.py`` Redis Streams mechanics: group, reads, claims, acks
* ``sync_batch.py``      one chunk of messages -> Bitrix ``batch`` calls -> outcomes
* ``write_back.py``      Bitrix IDs and sync state written to the database
* ``retry_schedule.py``  backoff with jitter, and messages held for later
* ``record_locks.py``    one worker per record at a time, across hosts
"""

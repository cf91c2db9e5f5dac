"""The Bitrix worker: ``python manage.py run_bitrix_worker``.

Read in this order:

* ``runner.py``          the loop: signals, pause, one processor per stream
* ``chores.py``          periodic work: heartbeat, take-over by heartbeat, relay, reconcile, trimming
* ``outcome.py``         what happens to each message: ack, retry, dead letter, defer
* ``coalescing.py``      the worker's side of coalescing: hold a record synced too recently, ack unless dirty
* ``record_pacing.py``   how long a record just synced waits: doubling while it stays hot
* ``reconcile.py``       records waiting with no live message (Redis lost its data): queued again
* ``stream_consumer.py`` Redis Streams mechanics: group, reads, claims, acks
* ``sync_batch.py``      one chunk of messages -> Bitrix ``batch`` calls -> outcomes
* ``write_back.py``      Bitrix IDs and sync state written to the database
* ``retry_schedule.py``  backoff with jitter, and messages held for later
* ``record_locks.py``    one worker per record at a time, across hosts
* ``dead_letters.py``    the ``{prefix}dead`` stream: move, read, requeue, delete
* ``trimming.py``        drop acknowledged entries past the retention
* ``heartbeat.py``, ``config.py``  the worker's beat in Redis (and its thread); ``BITRIX_WORKER`` + options
"""

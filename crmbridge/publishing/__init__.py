"""Publishing: a saved order or user -> an operation in ``{prefix}operations``.

Read in this order:

* ``signals.py``    order/user saves -> which operation to queue
* ``messages.py``   the operation message format (entity, op, id)
* ``publisher.py``  ``queue_*``: outbox row in the transaction, published after commit
                    or after the response, behind a circuit breaker
* ``outbox.py``     the transactional outbox, the exactly-once Lua script, the relay
* ``coalescing.py`` no new entry while a record has an unacknowledged one: the dirty flag
* ``outbox_sql.py`` the three SQL statements every queued operation costs
* ``resync.py``     operations for records signals never saw (``bitrix_resync``, the admin)
"""

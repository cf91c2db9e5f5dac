"""Inbound Bitrix events: the portal's outbound webhooks, from endpoint to order.

Read in this order:

* ``events.py``    which events we handle and the ``{prefix}webhooks`` message format
* ``views.py``     ``POST /bitrix/webhook``: verify the token, queue, answer at once
* ``processor.py`` the worker's side: fetch the current record, apply it without
  queuing anything back to Bitrix (no ping-pong)
* ``apply.py``     the database writes of an applied event (``QuerySet.update``: no signals)
"""

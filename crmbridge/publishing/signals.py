"""Order and user saves -> ``crmbridge.publishing.publisher`` (the handlers only decide which call).

* creation queues a ``create``;
* a save queues an ``update`` only when a field in the model's
  ``BITRIX_FIELDS`` changed. The values are remembered when the instance is
  loaded or saved (``post_init``/``post_save``) and compared after the save;
  with ``update_fields``, only those fields count, so
  ``save(update_fields=["last_login"])`` queues nothing.

It also connects ``request_started``/``request_finished`` so that what a
request commits is published once its response has been sent.

No feedback loop: the worker writes ``bitrix_deal_id``/``bitrix_contact_id``
with ``QuerySet.update()`` (no signal), and a ``save()`` that changes only
those fields changes no Bitrix field. Fixtures (``loaddata``, ``raw=True``)
and bulk writes send nothing: ``manage.py bitrix_resync`` covers them.
"""

from __future__ import annotations

import functools

from django.core.signals import request_finished, request_started
from django.db.models.signals import post_init, post_save

from crmbridge import entities
from crmbridge.publishing import publisher

SNAPSHOT_ATTR = "_bitrix_snapshot"
_MISSING = object()


def connect() -> None:
    """Connect the handlers (from ``CrmbridgeConfig.ready``)."""
    for model in (entity.model() for entity in entities.ENTITIES.values()):
        post_init.connect(remember_bitrix_values, sender=model, dispatch_uid=f"bitrix-snapshot-{model._meta.label}")
        post_save.connect(queue_on_save, sender=model, dispatch_uid=f"bitrix-queue-{model._meta.label}")
    # Inside a request, what it committed is published once the response is sent.
    request_started.connect(publisher.begin_request, dispatch_uid="bitrix-begin-request")
    request_finished.connect(publisher.publish_after_response, dispatch_uid="bitrix-publish-after-response")


def queue_on_save(sender, instance, created: bool, raw: bool = False, update_fields=None, **kwargs) -> None:
    if raw:
        return
    queue_create, queue_update = _queue_functions(sender)
    if created:
        queue_create(instance.pk)
    elif bitrix_fields_changed(instance, update_fields):
        queue_update(instance.pk)
    remember_bitrix_values(sender, instance)


def _queue_functions(model) -> tuple:
    if entities.for_model(model) is entities.DEAL:
        return publisher.queue_deal_creation, publisher.queue_deal_update
    return publisher.queue_contact_creation, publisher.queue_contact_update


def remember_bitrix_values(sender, instance, **kwargs) -> None:
    """Keep the loaded values of the Bitrix fields (deferred ones are simply absent)."""
    values = instance.__dict__
    instance.__dict__[SNAPSHOT_ATTR] = {name: values[name] for name in _attnames(sender) if name in values}


def bitrix_fields_changed(instance, update_fields=None) -> bool:
    """Did the save write a new value to a field Bitrix receives?

    A field missing from the snapshot (deferred when loaded, set later) counts
    as changed, as does an equal value of another type ("5" for 5): an update
    too many is harmless, one too few is a stale deal.
    """
    before = instance.__dict__.get(SNAPSHOT_ATTR, {})
    after = instance.__dict__
    for field in _fields(type(instance)):
        if update_fields is not None and field.name not in update_fields and field.attname not in update_fields:
            continue
        if after.get(field.attname, _MISSING) is _MISSING:
            continue  # deferred and never loaded: the save did not write it
        if before.get(field.attname, _MISSING) != after[field.attname]:
            return True
    return False


@functools.cache
def _fields(model) -> tuple:
    return tuple(model._meta.get_field(name) for name in model.BITRIX_FIELDS)


@functools.cache
def _attnames(model) -> tuple[str, ...]:
    return tuple(field.attname for field in _fields(model))

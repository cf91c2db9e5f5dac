"""One chunk of stream messages -> Bitrix ``batch`` requests -> an outcome per message.

The path of a chunk:

1. parse the messages; invalid ones are dead letters at once;
2. coalesce: all messages for one record become one task (the record's
   *current* state is sent once) and are all acknowledged together;
3. lock the records (``record_locks``); records another worker holds wait;
4. load the records from the database (deleted ones are dead letters);
5. look up what must be known first, in one ``batch``: records whose earlier
   ``add`` may have reached Bitrix (``ORIGIN_ID`` search, so a crash between
   Bitrix's answer and our write-back never makes a duplicate) and contacts to
   update (their multifield IDs, so an e-mail is replaced, not appended); then
   the contacts still to be created are looked for among the portal's existing
   customers (``contact_adoption``, one grouped lookup for the chunk);
6. send the writes in ``batch`` requests of up to 50 commands; a deal whose
   contact is new rides in the same request and references it with
   ``$result[...]``; a deal's move to another pipeline and its product rows ride
   with it (``deal_commands``);
7. map every command's result or error back to its messages: write the IDs
   back, then let the runner acknowledge, retry or dead-letter.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from crmbridge import entities
from crmbridge.bitrix import mapping
from crmbridge.bitrix.client import BitrixClient
from crmbridge.bitrix.commands import result_ref
from crmbridge.bitrix.contact_match import adopted_contact_fields, is_ours
from crmbridge.bitrix.custom_fields import UserFieldCatalog
from crmbridge.bitrix.errors import BitrixError, ErrorKind
from crmbridge.publishing.messages import InvalidMessage, Operation
from crmbridge.worker import deal_commands, write_back
from crmbridge.worker.contact_adoption import adopt_existing, count_outcomes
from crmbridge.worker.dead_letters import DeadLetter
from crmbridge.worker.outcome import ChunkOutcome
from crmbridge.worker.record_locks import RecordLocks
from crmbridge.worker.stream_consumer import StreamMessage

logger = logging.getLogger("crmbridge.worker")

MAX_COMMANDS = 50

Key = tuple[str, int]  # (entity, local id)


@dataclass
class RecordTask:
    entity: str
    local_id: int
    messages: list[StreamMessage] = field(default_factory=list)
    record: Any = None
    bitrix_id: int | None = None
    adopted: bool = False  # found in Bitrix by ORIGIN_ID after an interrupted create
    existing: dict | None = None  # current contact, for multifield replacement
    error: BitrixError | None = None
    new_id: int | None = None  # what ``add`` answered, until it is written back
    plan: deal_commands.DealPlan | None = None  # a deal's pipeline and rows (None: not planned yet)
    extra_keys: tuple[str, ...] = ()  # a deal's move and rows commands in the batch sent
    failed_extras: tuple[str, ...] = ()  # those of them that failed

    @property
    def weight(self) -> int:
        """Commands this task puts in a batch (a deal whose plan failed counts its most)."""
        if self.entity != "deal":
            return 1
        return self.plan.command_count if self.plan is not None else 3

    @property
    def key(self) -> Key:
        return (self.entity, self.local_id)

    @property
    def command_key(self) -> str:
        return f"{self.entity[0]}{self.local_id}"

    @property
    def creating(self) -> bool:
        """No Bitrix ID known yet: the command is an ``add``."""
        return self.bitrix_id is None

    def describe(self) -> str:
        return f"{entities.get(self.entity).local_name} {self.local_id}"


class ContactMissing(Exception):
    """A deal's user has no Bitrix contact yet, and none is being created with it."""


class SyncBatch:
    """Syncs one chunk. Stateless between chunks; the runner owns retries."""

    def __init__(
        self,
        client: BitrixClient,
        locks: RecordLocks,
        *,
        consumer: str,
        max_commands: int = MAX_COMMANDS,
        stopping: Callable[[], bool] = lambda: False,
    ) -> None:
        self.client = client
        self.locks = locks
        self.consumer = consumer
        # Asked between requests: a chunk of 1,000 messages is 30-odd requests, more than a
        # shutdown should wait for at a slow plan. What is not sent stays pending (deferred).
        self.stopping = stopping
        # 50 is Bitrix's limit; 1 reproduces the original one-request-per-operation design (benchmarks).
        self.max_commands = max(1, min(max_commands, MAX_COMMANDS))
        self.custom_fields = UserFieldCatalog(client)

    # -- entry point -------------------------------------------------------
    def process(self, messages: list[StreamMessage]) -> ChunkOutcome:
        outcome = ChunkOutcome()
        self._new_contacts: dict[int, int] = {}  # user id -> contact created in this chunk
        tasks = self._coalesce(messages, outcome)
        self._add_owner_contacts(tasks)
        locked = self.locks.acquire(list(tasks))
        try:
            self._defer_unlocked(tasks, locked, outcome)
            self._load(tasks, outcome)
            if tasks:
                self._sync(tasks, outcome)
        finally:
            self.locks.release(locked)
        return outcome

    # -- 1-4: parse, coalesce, lock, load ---------------------------------
    def _coalesce(self, messages: list[StreamMessage], outcome: ChunkOutcome) -> dict[Key, RecordTask]:
        tasks: dict[Key, RecordTask] = {}
        for message in messages:
            try:
                operation = Operation.from_fields(message.fields)
            except InvalidMessage as exc:
                logger.error("[WORKER] Error processing operation message: %s: %s", message.id, exc)
                outcome.dead.append((message, self._letter(message, "invalid_message", "", str(exc))))
                continue
            logger.info(
                "[WORKER] Processing %s operation for %s %s (retry: %s, message_id: %s)",
                operation.op, operation.entity, operation.local_id, message.retry, message.id,
            )  # fmt: skip
            key = (operation.entity, operation.local_id)
            tasks.setdefault(key, RecordTask(*key)).messages.append(message)
        return tasks

    def _add_owner_contacts(self, tasks: dict[Key, RecordTask]) -> None:
        """A deal needs its user's contact: a user without one is synced in the same chunk."""
        deal_ids = [local_id for entity, local_id in tasks if entity == "deal"]
        for owner_id in write_back.owners_without_contact(deal_ids):
            tasks.setdefault(("contact", owner_id), RecordTask("contact", owner_id))

    def _defer_unlocked(self, tasks: dict[Key, RecordTask], locked: set[Key], outcome: ChunkOutcome) -> None:
        for key in [k for k in tasks if k not in locked]:
            outcome.deferred.extend(tasks.pop(key).messages)

    def _load(self, tasks: dict[Key, RecordTask], outcome: ChunkOutcome) -> None:
        for entity in ("contact", "deal"):
            ids = [i for e, i in tasks if e == entity]
            rows = write_back.load_records(entity, ids) if ids else {}
            for local_id in ids:
                task = tasks[(entity, local_id)]
                task.record = rows.get(local_id)
                if task.record is None:
                    self._record_gone(tasks.pop((entity, local_id)), outcome)
                else:
                    task.bitrix_id = getattr(task.record, entities.get(entity).bitrix_id_field)
        for key in [k for k in tasks if k[0] == "deal"]:  # a deal whose new contact is locked elsewhere waits
            owner = tasks[key].record.owner
            if not owner.bitrix_contact_id and ("contact", owner.pk) not in tasks:
                outcome.deferred.extend(tasks.pop(key).messages)

    def _record_gone(self, task: RecordTask, outcome: ChunkOutcome) -> None:
        reason = f"{task.describe()} no longer exists in the database"
        for message in task.messages:
            logger.error("[WORKER] Error processing operation message: %s: %s", message.id, reason)
            outcome.dead.append((message, self._letter(message, "record_not_found", "", reason)))

    # -- 5: look up ----------------------------------------------------------
    def _sync(self, tasks: dict[Key, RecordTask], outcome: ChunkOutcome) -> None:
        try:
            self._look_up(list(tasks.values()))
        except BitrixError as exc:
            self._fail_all(list(tasks.values()), exc, outcome)
            return
        for task in tasks.values():
            if task.entity == "deal":
                task.plan = self._plan(task)
        batches = self._pack(tasks)
        for index, batch in enumerate(batches):
            if index and self.stopping():
                self._leave_for_another_worker(batches[index:], outcome)
                return
            self._send(batch, outcome)

    @staticmethod
    def _leave_for_another_worker(batches: list[list[RecordTask]], outcome: ChunkOutcome) -> None:
        left = [task for batch in batches for task in batch]
        for task in left:
            outcome.deferred.extend(task.messages)
        logger.info("[WORKER] Stopping: %s record(s) of the chunk not sent; left pending for another worker", len(left))

    @staticmethod
    def _plan(task: RecordTask) -> deal_commands.DealPlan | None:
        """``None`` when the order cannot be mapped: ``_command`` plans again and reports why."""
        try:
            return deal_commands.plan_deal(task.record, creating=task.creating)
        except Exception:  # reported by _command, which runs the same code
            return None

    def _look_up(self, tasks: list[RecordTask]) -> None:
        commands: dict[str, tuple[str, dict]] = {}
        for entity in ("contact", "deal"):
            creating = [t.local_id for t in tasks if t.entity == entity and t.creating]
            suspects = write_back.create_markers(entity, creating) if creating else set()
            for task in tasks:
                if task.entity != entity:
                    continue
                if task.creating and task.local_id in suspects:
                    origin = mapping.origin_id(entity, task.local_id)
                    # A contact found here is updated next: its multifield IDs are needed too, and
                    # its origin, which tells our contact (replace its e-mail) from an adopted one.
                    select = ["ID", "EMAIL", "PHONE", "ORIGINATOR_ID", "ORIGIN_ID"] if entity == "contact" else ["ID"]
                    # Exact match on both: another system's "order-12" on a shared portal is not ours.
                    exact = {"=ORIGIN_ID": origin, "=ORIGINATOR_ID": settings.BITRIX_ORIGINATOR_ID}
                    params = {"filter": exact, "select": select, "start": -1}
                    commands[f"l{task.command_key}"] = (entities.get(entity).method("list"), params)
                elif entity == "contact" and not task.creating:
                    commands[f"g{task.command_key}"] = ("crm.contact.get", {"id": task.bitrix_id})
        by_key = {t.command_key: t for t in tasks}
        for start in range(0, len(commands), self.max_commands):
            chunk = dict(list(commands.items())[start : start + self.max_commands])
            result = self.client.batch(chunk)
            for key, value in result.results.items():
                self._apply_lookup(by_key[key[1:]], key[0], value)
            for key, error in result.errors.items():
                by_key[key[1:]].error = error
        adopt_existing(self.client, tasks, max_commands=self.max_commands)  # existing customers (issue 20)
        adopted = {t.local_id: t.bitrix_id for t in tasks if t.entity == "contact" and t.adopted}
        for task in tasks:  # the owner loaded with a deal is another object: tell it the adopted contact
            if task.entity == "deal" and task.record.owner_id in adopted:
                task.record.owner.bitrix_contact_id = adopted[task.record.owner_id]

    def _apply_lookup(self, task: RecordTask, kind: str, value: Any) -> None:
        if kind == "g":
            task.existing = value if isinstance(value, dict) else None
            return
        found = {int(item["ID"]): item for item in value or [] if isinstance(item, dict) and "ID" in item}
        if found:  # an earlier add reached Bitrix: adopt it instead of adding again
            task.bitrix_id, task.adopted = min(found), True
            if task.entity == "contact":  # replace its e-mail and phone, do not append to them
                task.existing = found[task.bitrix_id]
            write_back.write_bitrix_id(task.entity, task.local_id, task.bitrix_id)
            setattr(task.record, entities.get(task.entity).bitrix_id_field, task.bitrix_id)
            logger.info(
                "Found existing Bitrix %s %s for %s (ORIGIN_ID match); not creating another",
                task.entity, task.bitrix_id, task.describe(),
            )  # fmt: skip

    # -- 6: pack into batches ---------------------------------------------------
    def _pack(self, tasks: dict[Key, RecordTask]) -> list[list[RecordTask]]:
        """Tasks in batches of <= ``max_commands`` commands, each new contact before its deals.

        A deal with its move and rows is indivisible (its rows must ride with its ``add``).
        Batches are filled to the brim, first fit: a task goes in the first batch with room
        for it, but a deal never before the batch of its new contact. A deal after its
        contact's batch uses the contact's ID written back meanwhile (``_contact_for``).
        So a chunk of 50 new customers with an order each (150 commands: contact, deal,
        rows) is 3 requests of 50, not 3 of 48-49 and a 4th with the rest.
        """
        deals_of: dict[int, list[RecordTask]] = {}  # a new contact's deals follow it
        for task in tasks.values():
            if task.entity == "deal":
                deals_of.setdefault(task.record.owner_id, []).append(task)
        ordered: list[RecordTask] = []
        for task in [t for t in tasks.values() if t.entity == "contact"]:
            ordered += [task, *(deals_of.get(task.local_id, []) if task.creating else [])]
        placed = {id(t) for t in ordered}
        ordered += [t for t in tasks.values() if id(t) not in placed]
        batches: list[list[RecordTask]] = []
        loads: list[int] = []  # commands in each batch, kept as tasks go in (chunks reach 1,000 messages)
        open_from = 0  # batches before this one are full
        contact_batch: dict[int, int] = {}  # user id -> the batch of the contact created in this chunk
        for task in ordered:  # first fit, never before the batch of the deal's new contact
            weight = task.weight
            earliest = contact_batch.get(task.record.owner_id, 0) if task.entity == "deal" else 0
            index = next(
                (i for i in range(max(earliest, open_from), len(batches)) if loads[i] + weight <= self.max_commands),
                len(batches),
            )
            if index == len(batches):
                batches.append([])
                loads.append(0)
            batches[index].append(task)
            loads[index] += weight
            while open_from < len(loads) and loads[open_from] >= self.max_commands:
                open_from += 1
            if task.entity == "contact" and task.creating:
                contact_batch[task.local_id] = index
        return [b for b in batches if b]

    # -- 6-7: send and map --------------------------------------------------
    def _send(self, batch: list[RecordTask], outcome: ChunkOutcome) -> None:
        ready = self._still_locked([t for t in batch if not self._settle_early(t, outcome)], outcome)
        commands: dict[str, tuple[str, dict]] = {}
        for task in ready:
            command = self._command(task, commands, outcome)
            if command is not None:
                before, after = self._around(task, command)
                commands.update(before)
                commands[task.command_key] = command
                commands.update(after)
                task.extra_keys = (*before, *after)
        sent = [t for t in ready if t.command_key in commands]
        if not sent:
            return
        write_back.mark_create_started([t.key for t in sent if t.creating])
        try:
            result = self.client.batch(commands)
        except BitrixError as exc:
            self._batch_failed(sent, exc, outcome)
            return
        succeeded: list[tuple[RecordTask, BitrixError | None]] = []  # (task, what keeps it from being complete)
        failed_contacts: set[int] = set()
        for task in sent:  # contacts come first: their new IDs serve the deals after them
            referenced = task.entity == "deal" and self._references_failed(task, commands, failed_contacts)
            if task.command_key in result.results and self._take_result(task, result.results[task.command_key]):
                unlinked = BitrixError("CONTACT_FAILED", "deal saved without its contact; will be linked on retry")
                extra = _extra_error(task, result, commands)
                succeeded.append((task, unlinked if referenced else extra))
                continue
            error = result.errors.get(task.command_key) or BitrixError(
                "BAD_RESULT", f"no usable result: {result.results.get(task.command_key)!r:.80}"
            )
            if task.entity == "contact":
                failed_contacts.add(task.local_id)
            if referenced:  # the deal failed because its contact did: not the deal's own fault
                error = BitrixError("CONTACT_FAILED", f"its contact failed: {error}", kind=ErrorKind.RETRY)
            self._failed(task, error, outcome)
        self._write_back(succeeded, outcome)

    @staticmethod
    def _references_failed(deal: RecordTask, commands: dict, failed_contacts: set[int]) -> bool:
        """Did this deal reference (``$result``) a contact add that failed in the same batch?"""
        owner_id = deal.record.owner_id
        return owner_id in failed_contacts and commands[deal.command_key][1]["fields"].get("CONTACT_ID") == result_ref(
            f"c{owner_id}"
        )

    def _still_locked(self, tasks: list[RecordTask], outcome: ChunkOutcome) -> list[RecordTask]:
        """Renew the record locks before sending; a task whose lease ran out waits for its turn."""
        kept = self.locks.renew([t.key for t in tasks])
        for task in tasks:
            if task.key not in kept:
                logger.warning("[WORKER] Lock on %s expired during the chunk; deferring it", task.describe())
                outcome.deferred.extend(task.messages)
        return [t for t in tasks if t.key in kept]

    def _settle_early(self, task: RecordTask, outcome: ChunkOutcome) -> bool:
        """A task whose lookup failed is settled without a write."""
        if task.error is None:
            return False
        self._failed(task, task.error, outcome)
        return True

    def _command(self, task: RecordTask, commands: dict, outcome: ChunkOutcome) -> tuple[str, dict] | None:
        try:
            if task.entity == "contact":
                fields = self._contact_fields(task)
            else:
                # Planned before packing; a plan that failed then fails here again, as a mapping error.
                task.plan = task.plan or deal_commands.plan_deal(task.record, creating=task.creating)
                contact_id = self._contact_for(task, commands)
                fields = mapping.deal_fields(task.record, contact_id=contact_id, category=task.plan.category)
                if task.creating:
                    fields["CATEGORY_ID"] = task.plan.category
            fields.update(self.custom_fields.values(task.entity, task.record))
        except ContactMissing as exc:
            self._failed(task, BitrixError("CONTACT_MISSING", str(exc), kind=ErrorKind.RETRY), outcome)
            return None
        except BitrixError as exc:  # reading the custom fields' descriptions failed: as that error says
            self._failed(task, exc, outcome)
            return None
        except Exception as exc:  # a record our mapping cannot express: never stop the loop
            logger.exception("[WORKER] Error processing operation message: cannot map %s", task.describe())
            self._failed(task, BitrixError("MAPPING_ERROR", f"{type(exc).__name__}: {exc}"), outcome)
            return None
        entity = entities.get(task.entity)
        params = {"REGISTER_SONET_EVENT": "N"}
        if task.creating:
            return (entity.method("add"), {"fields": fields, "params": params})
        return (entity.method("update"), {"id": task.bitrix_id, "fields": fields, "params": params})

    def _around(self, task: RecordTask, command: tuple[str, dict]) -> tuple[dict, dict]:
        """A deal's move and rows commands (``deal_commands``); none for a contact."""
        if task.entity != "deal" or task.plan is None:
            return {}, {}
        stage = command[1]["fields"]["STAGE_ID"]
        return deal_commands.around(task.local_id, task.plan, deal_id=task.bitrix_id, stage=stage)

    @staticmethod
    def _contact_fields(task: RecordTask) -> dict:
        """Ours: the user's fields, e-mail and phone replaced. Adopted (the sales team's): additions only."""
        if task.creating or is_ours(task.existing, task.local_id):
            return mapping.contact_fields(task.record, existing=task.existing)
        return adopted_contact_fields(task.record, task.existing or {})

    def _contact_for(self, deal: RecordTask, commands: dict) -> int | str:
        """The deal's CONTACT_ID: known, created earlier in this chunk, or a reference into this request.

        Raises ``ContactMissing`` when none of these holds (the contact failed or went in
        another request that failed): a deal is never sent without its contact.
        """
        owner = deal.record.owner
        known = owner.bitrix_contact_id or self._new_contacts.get(owner.pk)
        if known:
            return known
        contact_key = f"c{owner.pk}"
        if contact_key in commands:
            return result_ref(contact_key)
        raise ContactMissing(f"the contact of user {owner.pk} is not in Bitrix yet")

    @staticmethod
    def _take_result(task: RecordTask, value: Any) -> bool:
        """Read the new ID from an ``add`` result; ``update`` answers ``true``."""
        if not task.creating:
            return bool(value)
        try:
            task.new_id = int(value)
        except (TypeError, ValueError):
            return False
        logger.info("Created Bitrix %s %s for %s", task.entity, task.new_id, task.describe())
        return True

    def _write_back(self, succeeded: list[tuple[RecordTask, BitrixError | None]], outcome: ChunkOutcome) -> None:
        """One transaction for the whole batch: new IDs, sync state, deal state, create markers cleared.

        An error next to a task marks a record Bitrix saved incompletely: a deal
        saved without its contact (the contact failed in the same batch), or whose
        move or rows failed. Its ID is kept, and it is retried (or paused on,
        or dead-lettered, by the error's kind) so that the next attempt completes it.
        """
        if not succeeded:
            return
        created = [(t.entity, t.local_id, t.new_id) for t, _ in succeeded if t.new_id is not None]
        write_back.record_success(
            created=created,
            synced=[(t.entity, t.local_id) for t, error in succeeded if error is None],
            deal_state=[_deal_state(t) for t, _ in succeeded if t.entity == "deal" and t.plan],
        )
        count_outcomes({"created": sum(1 for entity, _, _ in created if entity == "contact")})
        for task, error in succeeded:
            if task.new_id is not None:
                if task.entity == "contact":
                    self._new_contacts[task.local_id] = task.new_id
                task.bitrix_id, task.new_id = task.new_id, None
                setattr(task.record, entities.get(task.entity).bitrix_id_field, task.bitrix_id)
                logger.info("Updated %s with Bitrix %s ID %s", task.describe(), task.entity, task.bitrix_id)
            else:
                logger.info("Updated Bitrix %s %s for %s", task.entity, task.bitrix_id, task.describe())
            if error is None:
                outcome.done.extend(task.messages)
            else:
                self._failed(task, error, outcome)

    def _failed(self, task: RecordTask, error: BitrixError, outcome: ChunkOutcome) -> None:
        verb = "create" if task.creating else "update"
        logger.error("Failed to %s Bitrix %s for %s: %s", verb, task.entity, task.describe(), error)
        if error.kind is ErrorKind.CONFIG:
            outcome.pause = outcome.pause or error
            outcome.deferred.extend(task.messages)
            return
        write_back.mark_error(task.entity, task.local_id, str(error), final=error.kind is ErrorKind.PERMANENT)
        if error.kind is ErrorKind.PERMANENT:
            for message in task.messages:
                outcome.dead.append((message, self._letter(message, "permanent_error", error.code, str(error))))
        else:
            outcome.retry.extend((message, error) for message in task.messages)

    def _batch_failed(self, sent: list[RecordTask], error: BitrixError, outcome: ChunkOutcome) -> None:
        """The whole request failed. A permanent failure is isolated by sending each task alone."""
        if error.kind is ErrorKind.PERMANENT and len(sent) > 1:
            for task in sent:
                self._send([task], outcome)
            return
        self._fail_all(sent, error, outcome)

    def _fail_all(self, tasks: list[RecordTask], error: BitrixError, outcome: ChunkOutcome) -> None:
        for task in tasks:
            self._failed(task, error, outcome)

    def _letter(self, message: StreamMessage, reason: str, code: str, description: str) -> DeadLetter:
        return DeadLetter.of(message, reason=reason, consumer=self.consumer, error_code=code, description=description)


def _extra_error(task: RecordTask, result, commands: dict) -> BitrixError | None:
    """The first failure among a deal's move and rows commands (``None``: all went through)."""
    task.failed_extras = tuple(k for k in task.extra_keys if k in result.errors or not result.results.get(k))
    if not task.failed_extras:
        return None
    key = task.failed_extras[0]
    answer = result.results.get(key)
    return result.errors.get(key) or BitrixError("BAD_RESULT", f"{commands[key][0]} answered {answer!r:.80}")


def _deal_state(task: RecordTask) -> tuple[int, str | None, int | None]:
    """``(order id, rows fingerprint, pipeline)`` now true in the portal; ``None`` keeps the stored value."""
    plan = task.plan
    placed = task.new_id is not None or deal_commands.move_key(task.local_id) not in task.failed_extras
    rows_set = deal_commands.rows_key(task.local_id) not in task.failed_extras
    return (task.local_id, plan.rows_hash if rows_set else None, plan.category if placed else None)

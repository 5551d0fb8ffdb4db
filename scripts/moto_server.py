#!/usr/bin/env python3
"""moto's server, as `moto_server` runs it, with two defects of its DynamoDB fixed.

scripts/stack.py starts this instead of the `moto_server` console script. The
protocol, the arguments and every other service are moto's own; only these
two things differ, and both make the emulator behave more like DynamoDB:

1. **Each DynamoDB request is atomic.** moto serves requests on threads and
   a conditional write is "read the item, test the condition, store": two
   threads can interleave between the test and the store, and both win.
   Real DynamoDB never lets that happen, and xcr's ledger claim and its job
   counters depend on it, so races between deliveries could (rarely) show two
   winners in a test. Here DynamoDB requests take one lock, so each is applied
   whole, as DynamoDB applies it. (moto holds the GIL for nearly all of a
   request anyway: this costs no measurable throughput.)

2. **TransactWriteItems costs what it touches.** moto backs up every table a
   transaction touches with `copy.deepcopy` before applying it, once per
   action: a 100-action transaction against a table of N items copies 100 x N
   items. Migration jobs count their tasks in transactions against the jobs
   table, which holds a marker per counted task, so a 2,000-object job spent
   minutes (and gigabytes) copying. Here the transaction is backed up by
   copying only the items it names, and a cancelled transaction puts exactly
   those back. What a transaction does and answers is unchanged: moto's own
   code still runs it; tests/infra/test_moto_server.py checks the rollback
   and the atomicity against this server with boto3.

3. **A Query reads its own partition.** moto answers a Query on a table by
   sorting every item of the table and keeping those with the asked-for hash
   key; the jobs table's one partition of job items sits beside every job's
   task markers, so each `xcr jobs list` (and the pump's look for open jobs)
   cost a sort of the whole table. Here a Query on the table itself (not on
   an index) starts from the items of its partition only; what it returns is
   the same, in the same order.

4. **SQS reads the clock once per request.** moto decides whether each
   message is visible or delayed by reading the clock for that message, and
   every SendMessage computes the queue's attributes, which counts the
   visible, in-flight and delayed messages that way: a send into a queue
   holding N messages reads the clock 4N times. Here one reading serves the
   whole count (the rule, `visible_at < now`, `delayed_until > now`, is
   moto's own), so seeding a few thousand notifications no longer takes
   minutes.
"""

from __future__ import annotations

import copy as _copy
import functools
import inspect
import sys
import threading
import types
from typing import Any

import moto.dynamodb.models as ddb_models
import moto.dynamodb.responses as ddb_responses
from moto.dynamodb.models.table import Table
from moto.server import main

_DYNAMODB = threading.Lock()
_IN_TRANSACTION = threading.local()
_QUERY = threading.local()


def _deepcopy(obj: Any, memo: Any = None) -> Any:
    """copy.deepcopy, except that a table is not copied inside a transaction (see 2.)."""
    if isinstance(obj, Table) and getattr(_IN_TRANSACTION, "active", False):
        return obj
    return _copy.deepcopy(obj, memo)


def _patch_atomic_requests() -> None:
    original = ddb_responses.DynamoHandler.call_action

    @functools.wraps(original)
    def call_action(self: Any) -> Any:
        with _DYNAMODB:
            return original(self)

    ddb_responses.DynamoHandler.call_action = call_action


def _key_of(table: Table, op: dict[str, Any]) -> tuple[Any, Any] | None:
    """The (hash, range) DynamoType key an action names, or None if it names none."""
    attrs = op.get("Key") or op.get("Item") or {}
    if table.hash_key_attr not in attrs:
        return None
    hash_key = ddb_models.DynamoType(attrs[table.hash_key_attr])
    range_key = None
    if table.range_key_attr is not None:
        if table.range_key_attr not in attrs:
            return None
        range_key = ddb_models.DynamoType(attrs[table.range_key_attr])
    return hash_key, range_key


def _restore(table: Table, hash_key: Any, range_key: Any, item: Any) -> None:
    """Puts one item back as it was (absent when `item` is None), without a stream record."""
    if range_key is None:
        if item is None:
            table.items.pop(hash_key, None)
        else:
            table.items[hash_key] = item
        return
    if item is None:
        table.items.get(hash_key, {}).pop(range_key, None)
    else:
        table.items[hash_key][range_key] = item


def _patch_transactions() -> None:
    # The module's `copy` is only used for these backups and for single items (update_item):
    # the stand-in copies everything except a whole table during a transaction.
    ddb_models.copy = types.SimpleNamespace(deepcopy=_deepcopy, copy=_copy.copy)
    original = ddb_models.DynamoDBBackend.transact_write_items

    @functools.wraps(original)
    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        backup = []
        for action in transact_items:
            if not isinstance(action, dict) or len(action) != 1:
                continue  # moto's own code rejects it before changing anything
            _, op = next(iter(action.items()))
            table = self.tables.get(op.get("TableName")) if isinstance(op, dict) else None
            key = _key_of(table, op) if table is not None else None
            if key is None:
                continue
            backup.append((table, *key, _copy.deepcopy(table.get_item(*key))))
        _IN_TRANSACTION.active = True
        try:
            return original(self, transact_items)
        except BaseException:
            # moto has "restored" each table to itself; put back the items this touched.
            for table, hash_key, range_key, item in reversed(backup):
                _restore(table, hash_key, range_key, item)
            raise
        finally:
            _IN_TRANSACTION.active = False

    ddb_models.DynamoDBBackend.transact_write_items = transact_write_items


def _patch_queries() -> None:
    original_query = Table.query
    original_all_items = Table.all_items
    signature = inspect.signature(original_query)

    @functools.wraps(original_query)
    def query(self: Table, hash_key: Any, *args: Any, **kwargs: Any) -> Any:
        on_table = signature.bind(self, hash_key, *args, **kwargs).arguments.get("index_name") is None
        _QUERY.partition = (self, hash_key) if on_table and hash_key is not None else None
        try:
            return original_query(self, hash_key, *args, **kwargs)
        finally:
            _QUERY.partition = None

    @functools.wraps(original_all_items)
    def all_items(self: Table) -> list[Any]:
        partition = getattr(_QUERY, "partition", None)
        if partition is None or partition[0] is not self or not self.range_key_attr:
            return original_all_items(self)
        # What moto's query keeps of all_items(): the partition's items, in range-key order.
        return sorted(self.items.get(partition[1], {}).values(), key=lambda item: item.range_key)

    Table.query = query
    Table.all_items = all_items


def _patch_sqs_counts() -> None:
    from moto.core.utils import unix_time_millis
    from moto.sqs.models import Queue

    def visible(self: Queue) -> list[Any]:
        now = unix_time_millis()
        return [m for m in self._messages if now > m.visible_at and not now < m.delayed_until]

    def not_visible(self: Queue) -> int:
        now = unix_time_millis()
        return sum(1 for m in self._messages if not now > m.visible_at)

    def delayed(self: Queue) -> int:
        now = unix_time_millis()
        return sum(1 for m in self._messages if now < m.delayed_until)

    Queue.messages = property(visible)
    Queue.approximate_number_of_messages_not_visible = property(not_visible)
    Queue.approximate_number_of_messages_delayed = property(delayed)


if __name__ == "__main__":
    _patch_atomic_requests()
    _patch_transactions()
    _patch_queries()
    _patch_sqs_counts()
    sys.exit(main())

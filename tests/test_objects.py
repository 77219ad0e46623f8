"""The one Durable Object core (``runtime.objects.ObjectHost``) and the one SQLite binding
that both in-process hosts share: ``LocalNamespace`` in the kernel and the ``helix serve``
stand-in. Each rule is checked once here, and each host is checked to use it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from helix_lab.runtime.objects import ObjectHost, Slot
from helix_lab.runtime.sql import SqliteStorage
from helix_lab.worker_bundle.standin import DurableObjectStorage


class Store:
    """A storage that records whether it was closed."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.closed = False


class Thing:
    def __init__(self, slot: Slot[str, Store, Any]) -> None:
        self.name = slot.id
        self.log: list[str] = []


def make_host(built: list[str], **options: Any) -> ObjectHost[str, Store, Thing]:
    def build(slot: Slot[str, Store, Any]) -> Thing:
        built.append(slot.id)
        return Thing(slot)

    async def close(store: Store) -> None:
        await asyncio.sleep(0)
        store.closed = True

    return ObjectHost(open_storage=Store, build=build, close_storage=close, **options)


async def test_one_instance_per_id_and_one_event_at_a_time_per_id() -> None:
    built: list[str] = []
    host = make_host(built)
    timeline: list[str] = []

    def slow(tag: str) -> Callable[[Thing], Any]:
        async def handle(thing: Thing) -> str:
            timeline.append(f"{thing.name}:{tag}:in")
            await asyncio.sleep(0.01)
            timeline.append(f"{thing.name}:{tag}:out")
            return tag

        return handle

    results = await asyncio.gather(host.event("a", slow("1")), host.event("a", slow("2")),
                                   host.event("b", slow("3")))
    assert results == ["1", "2", "3"]
    assert built == ["a", "b"]
    a_events = [t for t in timeline if t.startswith("a:")]
    assert a_events == ["a:1:in", "a:1:out", "a:2:in", "a:2:out"]  # the gate
    assert timeline.index("b:3:in") < timeline.index("a:1:out")  # other ids do not wait
    assert host.live("a") is host.instance("a") and host.live("c") is None
    await host.aclose()


async def test_an_object_that_sends_itself_an_event_is_refused_not_deadlocked() -> None:
    host = make_host([])

    async def reenter(thing: Thing) -> Any:
        return await host.event(thing.name, lambda _t: asyncio.sleep(0, "inner"))

    with pytest.raises(RuntimeError, match="sent an event to itself"):
        await asyncio.wait_for(host.event("a", reenter), timeout=60)
    # The gate was released: the next event goes through.
    assert await asyncio.wait_for(host.event("a", lambda _t: asyncio.sleep(0, "ok")), 60) == "ok"
    await host.aclose()


async def test_settle_runs_inside_the_gate_before_each_event_and_after_a_build() -> None:
    calls: list[str] = []

    async def settle(slot: Slot[str, Store, Any]) -> None:
        calls.append("built" if slot.instance is not None else "empty")

    host = make_host([], settle=settle)
    await host.event("a", lambda _t: asyncio.sleep(0))
    await host.event("a", lambda _t: asyncio.sleep(0))
    assert calls == ["empty", "built", "built"]
    await host.aclose()


async def test_evict_keeps_storage_discard_and_aclose_close_it(
        caplog: pytest.LogCaptureFixture) -> None:
    built: list[str] = []
    dropped: list[str] = []
    host = make_host(built, drop_instance=lambda thing: dropped.append(thing.name))
    await host.event("a", lambda _t: asyncio.sleep(0))
    store = host.slot("a").storage
    host.evict("a")
    assert dropped == ["a"] and host.live("a") is None and not store.closed
    await host.event("a", lambda _t: asyncio.sleep(0))
    assert built == ["a", "a"] and host.slot("a").storage is store  # rebuilt on its storage

    await host.event("b", lambda _t: asyncio.sleep(0))
    b_store = host.slot("b").storage
    await host.discard("b")
    assert b_store.closed and "b" not in host.slots

    cut: list[str] = []

    async def forever() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            cut.append("cut")

    async def fails() -> None:
        raise ValueError("a background failure")

    host.spawn(forever())
    failing = host.spawn(fails())
    with caplog.at_level(logging.WARNING, logger="helix_lab.objects"):
        await asyncio.gather(failing, return_exceptions=True)
        await asyncio.sleep(0)
    assert "a background task failed" in caplog.text
    await host.aclose()
    assert cut == ["cut"] and not host.tasks.tasks
    assert store.closed and host.slots == {} and dropped == ["a", "b", "a"]


# -- nested transactions: one implementation, both bindings ---------------------------------


def runtime_binding(path: Path) -> tuple[Callable[[str], Any], Callable[[Any], Any], Any]:
    db = SqliteStorage(path)
    return db.exec, db.transaction, db


def standin_binding(path: Path) -> tuple[Callable[[str], Any], Callable[[Any], Any], Any]:
    storage = DurableObjectStorage(str(path))
    return (lambda sql: storage.sql.exec(sql).toArray()), storage.transactionSync, storage


@pytest.mark.parametrize("binding", [runtime_binding, standin_binding],
                         ids=["runtime", "standin"])
def test_an_inner_transaction_that_fails_takes_back_only_its_own_writes(
        tmp_path: Path, binding: Any) -> None:
    exec_, transaction, db = binding(tmp_path / "db.sqlite3")
    exec_("CREATE TABLE t (x INTEGER)")

    def inner_fails() -> None:
        exec_("INSERT INTO t VALUES (2)")
        raise ValueError("inner")

    def outer() -> str:
        exec_("INSERT INTO t VALUES (1)")
        with pytest.raises(ValueError, match="inner"):
            transaction(inner_fails)
        transaction(lambda: exec_("INSERT INTO t VALUES (3)"))
        return "done"

    assert transaction(outer) == "done"
    assert [r["x"] for r in exec_("SELECT x FROM t ORDER BY x")] == [1, 3]

    def outer_fails() -> None:
        exec_("INSERT INTO t VALUES (4)")
        transaction(lambda: exec_("INSERT INTO t VALUES (5)"))
        raise ValueError("outer")

    with pytest.raises(ValueError, match="outer"):
        transaction(outer_fails)
    assert [r["x"] for r in exec_("SELECT x FROM t ORDER BY x")] == [1, 3]
    db.close()


async def test_the_standin_async_transaction_holds_across_awaits(tmp_path: Path) -> None:
    storage = DurableObjectStorage(str(tmp_path / "db.sqlite"))
    storage.sql.exec("CREATE TABLE t (x INTEGER)")

    async def write_then_fail(txn: DurableObjectStorage) -> None:
        txn.sql.exec("INSERT INTO t VALUES (1)")
        await asyncio.sleep(0)
        raise ValueError("after an await")

    with pytest.raises(ValueError, match="after an await"):
        await storage.transaction(write_then_fail)
    assert storage.sql.exec("SELECT COUNT(*) AS n FROM t").one()["n"] == 0
    storage.close()

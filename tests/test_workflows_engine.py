"""The emulated Workflows binding: memoized steps, retries, sleep, events, lifecycle, limits."""

from __future__ import annotations

import asyncio
import time
import warnings
from pathlib import Path
from typing import Any

import pytest

from helix_lab.errors import BadRequestError, ConflictError, NotFoundError
from helix_lab.workflows import (
    LocalWorkflowBinding,
    NonDeterministicStepNameWarning,
    NonRetryableError,
    parse_duration,
)

DEADLINE = 60.0  # only catches hangs


class Hold:
    """A step body that says it was reached, then waits until the test opens it."""

    def __init__(self) -> None:
        self._reached, self._opened = asyncio.Event(), asyncio.Event()

    async def __call__(self) -> None:
        self._reached.set()
        await self._opened.wait()

    async def reached(self) -> None:
        await asyncio.wait_for(self._reached.wait(), DEADLINE)

    def open(self) -> None:
        self._opened.set()


async def finished(binding: LocalWorkflowBinding, instance_id: str,
                   statuses: tuple[str, ...] = ("complete", "errored", "terminated")
                   ) -> dict[str, Any]:
    instance = await binding.get(instance_id)
    end = time.monotonic() + DEADLINE
    while time.monotonic() < end:
        status = await instance.status()
        if status["status"] in statuses:
            return status
        await asyncio.sleep(0.01)
    raise AssertionError(f"instance {instance_id} stuck at {await instance.status()}")


async def test_steps_are_keyed_by_name_and_count_and_replayed_without_running(tmp_path: Path):
    calls: list[str] = []
    hold = Hold()

    async def run(event, step):
        total = 0
        for i in range(3):  # one name, three calls: counts 1, 2, 3
            total += await step.do("add", lambda i=i: calls.append(f"add{i}") or i + 1)
        await step.do("wait", hold)  # blocks on the first host only
        return {"total": total, "item": event.payload["item"]}

    path = tmp_path / "wf.sqlite3"
    first = LocalWorkflowBinding(run, path)
    await first.create(id="i1", params={"item": "otter"})
    await hold.reached()
    await first.aclose()  # the host goes away mid-run
    assert calls == ["add0", "add1", "add2"]

    hold.open()
    second = LocalWorkflowBinding(run, path)
    status = await finished(second, "i1")  # get() alone continues it
    assert status == {"status": "complete", "error": None,
                      "output": {"total": 6, "item": "otter"}}
    assert calls == ["add0", "add1", "add2"]  # nothing ran twice
    steps = await (await second.get("i1")).steps()
    assert [(s["name"], s["count"], s["state"]) for s in steps] == [
        ("add", 1, "done"), ("add", 2, "done"), ("add", 3, "done"), ("wait", 1, "done")]
    await second.aclose()


async def test_python_sdk_decorator_injects_earlier_results_and_ctx():
    async def run(event, step):
        @step.do("first")
        async def first():
            return 20

        @step.do(config={"retries": {"limit": 0}})
        async def second(first, ctx):
            return first + ctx["attempt"]

        await first()
        return await second()

    binding = LocalWorkflowBinding(run)
    await binding.create(id="d")
    assert (await finished(binding, "d"))["output"] == 21
    names = [s["name"] for s in await (await binding.get("d")).steps()]
    assert names == ["first", "second"]
    await binding.aclose()


async def test_retries_follow_the_step_config_then_the_error_fails_the_instance():
    attempts: list[float] = []

    async def flaky():
        attempts.append(time.monotonic())
        if len(attempts) < 3:
            raise RuntimeError(f"boom {len(attempts)}")
        return "ok"

    async def always_fails():
        raise RuntimeError("never works")

    async def run(event, step):
        config = {"retries": {"limit": 2, "delay": 1, "backoff": "constant"}}
        ok = await step.do("flaky", flaky, config=config)
        await step.do("doomed", always_fails, config={"retries": {"limit": 1, "delay": 1}})
        return ok

    retried: list[tuple[str, int]] = []
    binding = LocalWorkflowBinding(run, on_retry=lambda i, row, exc: retried.append(
        (row.name, row.attempts)))
    await binding.create(id="r")
    status = await finished(binding, "r")
    assert len(attempts) == 3
    assert status["status"] == "errored"
    assert status["error"] == {"name": "RuntimeError", "message": "never works"}
    steps = {s["name"]: s for s in await (await binding.get("r")).steps()}
    assert steps["flaky"]["attempts"] == 3 and steps["flaky"]["state"] == "done"
    assert steps["doomed"]["attempts"] == 2 and steps["doomed"]["state"] == "failed"
    assert retried == [("flaky", 1), ("flaky", 2), ("doomed", 1)]
    await binding.aclose()


async def test_non_retryable_error_and_timeout():
    tries = {"n": 0, "t": 0}

    async def refuse():
        tries["n"] += 1
        raise NonRetryableError("bad input, no point retrying")

    async def slow():
        tries["t"] += 1
        await asyncio.sleep(60)

    async def run(event, step):
        try:
            await step.do("refuse", refuse)
        except NonRetryableError as exc:
            caught = str(exc)
        await step.do("slow", slow, config={"retries": {"limit": 1, "delay": 0},
                                            "timeout": 50})
        return caught

    binding = LocalWorkflowBinding(run)
    await binding.create(id="t")
    status = await finished(binding, "t")
    assert tries == {"n": 1, "t": 2}
    assert status["status"] == "errored"
    assert status["error"]["name"] == "WorkflowTimeoutError"
    assert "'slow' attempt 2 ran past its timeout of 0.05 s" in status["error"]["message"]
    await binding.aclose()


async def test_a_result_over_one_mib_fails_clearly_without_retrying():
    runs = {"n": 0}

    async def big():
        runs["n"] += 1
        return "x" * (2**20)

    async def run(event, step):
        return await step.do("big", big)

    binding = LocalWorkflowBinding(run)
    await binding.create(id="big")
    status = await finished(binding, "big")
    assert runs["n"] == 1
    assert status["error"]["name"] == "StepResultTooLargeError"
    message = status["error"]["message"]
    assert "The result of step 'big' is 1,048,578 bytes" in message and "1 MiB" in message
    await binding.aclose()


async def test_a_result_that_is_not_json_names_the_step():
    async def run(event, step):
        return await step.do("socket", lambda: object())

    binding = LocalWorkflowBinding(run)
    await binding.create(id="nj")
    status = await finished(binding, "nj")
    assert status["error"]["name"] == "StepResultNotJSONError"
    assert "The result of step 'socket' is of type object, which cannot be stored" in status["error"]["message"]
    await binding.aclose()


async def test_a_step_name_that_changes_on_replay_is_named_in_a_warning(tmp_path: Path):
    hold = Hold()
    stamp = {"v": 1}

    async def run(event, step):
        await step.do(f"fetch-{stamp['v']}", lambda: "data")  # the clock, in effect
        await step.do("hold", hold)
        return "done"

    path = tmp_path / "wf.sqlite3"
    first = LocalWorkflowBinding(run, path)
    await first.create(id="nd")
    await hold.reached()
    await first.aclose()
    stamp["v"] = 2
    hold.open()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        second = LocalWorkflowBinding(run, path)
        await finished(second, "nd")
    messages = [str(w.message) for w in caught
                if issubclass(w.category, NonDeterministicStepNameWarning)]
    assert len(messages) == 1
    assert "Step 'fetch-2'" in messages[0] and "had step 'fetch-1'" in messages[0]
    await second.aclose()


async def test_wait_for_event_takes_events_sent_before_and_after_and_times_out():
    async def run(event, step):
        early = await step.wait_for_event("early", type="ping", timeout="1 minute")
        late = await step.wait_for_event("late", type="ping", timeout="1 minute")
        try:
            await step.wait_for_event("never", type="other", timeout=30)
        except Exception as exc:
            missed = type(exc).__name__
        return [early["payload"], late["payload"], missed]

    binding = LocalWorkflowBinding(run)
    instance = await binding.create(id="ev")
    await instance.send_event("ping", {"n": 1})
    await finished(binding, "ev", ("waiting",))
    await instance.send_event({"type": "ping", "payload": {"n": 2}})
    status = await finished(binding, "ev")
    assert status["output"] == [{"n": 1}, {"n": 2}, "WorkflowTimeoutError"]
    with pytest.raises(ConflictError, match="complete: it takes no more events"):
        await instance.send_event("ping", {})
    with pytest.raises(BadRequestError, match="Event type 'no spaces!' is not valid"):
        await (await binding.create(id="ev2")).send_event("no spaces!", {})
    await binding.aclose()


async def test_sleep_is_durable_and_pause_resume_stop_at_a_step_boundary(tmp_path: Path):
    ran: list[str] = []

    async def run(event, step):
        await step.sleep("nap", 20)
        await step.sleep_until("alarm", time.time() * 1000)
        for i in range(3):
            await step.do(f"work-{i}", lambda i=i: ran.append(f"w{i}") or i)
            await step.sleep(f"breathe-{i}", "0 seconds")
        return len(ran)

    binding = LocalWorkflowBinding(run, tmp_path / "wf.sqlite3")
    instance = await binding.create(id="p")
    await instance.pause()
    assert (await instance.status())["status"] in ("waitingForPause", "paused")
    await finished(binding, "p", ("paused",))
    assert ran == []
    other = LocalWorkflowBinding(lambda event, step: asyncio.sleep(0))
    with pytest.raises(ConflictError, match="not paused"):
        await (await other.create(id="other")).resume()
    await other.aclose()
    await instance.resume()
    assert (await finished(binding, "p"))["output"] == 3
    types = [(s["name"], s["type"]) for s in await instance.steps()][:2]
    assert types == [("nap", "sleep"), ("alarm", "sleep")]
    await binding.aclose()


async def test_terminate_restart_and_restart_from_a_step():
    ran: list[str] = []
    hold = Hold()

    async def run(event, step):
        for name in ("a", "b", "c"):
            await step.do(name, lambda name=name: ran.append(name) or name)
        await step.do("hold", hold)
        return "".join(ran)

    binding = LocalWorkflowBinding(run)
    instance = await binding.create(id="x")
    await hold.reached()
    await instance.terminate()
    assert (await instance.status())["status"] == "terminated"
    with pytest.raises(ConflictError, match="already terminated"):
        await instance.terminate()

    hold.open()
    await instance.restart({"from": {"name": "b", "count": 1, "type": "do"}})
    await finished(binding, "x")
    assert ran == ["a", "b", "c", "b", "c"]  # "a" kept its stored result
    await instance.restart()
    await finished(binding, "x")
    assert ran == ["a", "b", "c", "b", "c", "a", "b", "c"]
    with pytest.raises(NotFoundError, match="no step 'zzz'"):
        await instance.restart(from_={"name": "zzz"})
    await binding.aclose()


async def test_unknown_instances_and_bad_ids_are_clear_errors():
    binding = LocalWorkflowBinding(lambda event, step: None)
    with pytest.raises(NotFoundError, match="no workflow instance 'ghost'") as err:
        await binding.get("ghost")
    assert err.value.status == 404
    with pytest.raises(BadRequestError, match="Instance id 'a b' is not valid"):
        await binding.create(id="a b")
    with pytest.raises(BadRequestError, match=r"The params is of type dict.*unknown type"):
        await binding.create(id="ok", params={"handle": object()})
    await binding.aclose()


def test_durations_follow_cloudflare_forms():
    assert parse_duration(1500) == 1.5
    assert parse_duration("10 seconds") == 10
    assert parse_duration("1 minute") == 60
    assert parse_duration("2 hours") == 7200
    with pytest.raises(Exception, match="'soon' is not a duration"):
        parse_duration("soon")

"""What every benchmark shares: the run context, figures, timing, and the two agents.

The same agent runs on both sides of a comparison: one tool (``echo``), a zero-latency
scripted model that calls it once per step until the last step and then answers. On
helix_lab it is an :class:`~helix_lab.Agent` on a :class:`~helix_lab.runtime.LocalNamespace`
with a sqlite file per session; on LangGraph it is a ``StateGraph`` with an ``llm`` node
and a ``tool`` node over ``add_messages``, checkpointed by ``SqliteSaver`` to a file.

LangGraph is imported lazily, so benchmarks that do not compare against it (and the
``helix serve`` agents module) do not pay for it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

REPO = Path(__file__).resolve().parent.parent
TINY_USAGE = {"input_tokens": 1, "output_tokens": 1}
"""Given to scripted turns where only the runtime is timed: ScriptedLLM's default token
estimate measures each new message, a model-side cost (figure 1 times it separately)."""


# -- the run ------------------------------------------------------------------------------


@dataclass
class Context:
    """One ``python -m benchmarks`` run: its size, its scratch directory, shared results."""

    quick: bool
    workdir: Path
    verbose: bool = True
    cache: dict[str, Any] = field(default_factory=dict)

    def n(self, full: int, quick: int) -> int:
        """The size of a workload: ``full`` normally, ``quick`` under ``--quick``."""
        return quick if self.quick else full

    def path(self, name: str) -> Path:
        """A fresh directory for one workload."""
        path = self.workdir / name
        path.mkdir(parents=True, exist_ok=False)
        return path

    def log(self, message: str) -> None:
        if self.verbose:
            print(f"  {message}", file=sys.stderr, flush=True)


@dataclass
class Ratio:
    """One measured ratio with its goal. ``met`` is ``None`` when there is no goal."""

    label: str
    value: float
    shown: str
    goal: str = "none set"
    met: bool | None = None

    @classmethod
    def at_most(cls, label: str, value: float, shown: str, limit: float,
                goal: str | None = None) -> Ratio:
        """A ratio whose goal is ``value ≤ limit``; ``goal`` words it (default ``≤ limit``)."""
        return cls(label, value, shown, goal=goal or f"≤ {limit:g}", met=value <= limit)

    @classmethod
    def at_least(cls, label: str, value: float, shown: str, limit: float,
                 goal: str | None = None) -> Ratio:
        """A ratio whose goal is ``value ≥ limit``; ``goal`` words it (default ``≥ limit``)."""
        return cls(label, value, shown, goal=goal or f"≥ {limit:g}", met=value >= limit)


@dataclass
class Figure:
    """One numbered figure of the issue: raw numbers, baseline, ratios, goals."""

    number: int
    title: str
    measures: str
    """What is measured, in one or two sentences."""
    baseline: str
    """What the ratio is taken against."""
    ratios: list[Ratio]
    raw: list[tuple[str, str]]
    """(label, value) rows of the raw numbers behind the ratios."""
    notes: list[str] = field(default_factory=list)
    plan: str | None = None
    """What we would do about a missed goal (shown under "Fell short")."""
    todo: str | None = None
    """Something this run could not measure and a later one should."""

    @property
    def met(self) -> bool | None:
        verdicts = [r.met for r in self.ratios if r.met is not None]
        if not verdicts:
            return None
        return all(verdicts)


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


@contextmanager
def stopwatch() -> Iterator[Callable[[], float]]:
    """``with stopwatch() as elapsed: ...; elapsed()`` gives seconds (frozen at exit)."""
    start = time.perf_counter()
    end: list[float] = []
    yield lambda: (end[0] if end else time.perf_counter()) - start
    end.append(time.perf_counter())


def median(values: list[float]) -> float:
    return statistics.median(values)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.3g} ms" if seconds < 1 else f"{seconds:,.2f} s"


def per_second(count: float, seconds: float) -> str:
    return f"{count / seconds:,.0f}/s"


def kib(n_bytes: float) -> str:
    return f"{n_bytes / 1024:,.1f} KiB" if n_bytes < 1024 * 1024 else f"{n_bytes / 2**20:,.1f} MiB"


def dir_bytes(path: Path) -> int:
    """Bytes on disk of every file under ``path`` (databases, WAL and journal files)."""
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def sqlite_read_all(path: Path, table: str = "helix_chunks", repeat: int = 3
                    ) -> tuple[float, int]:
    """Seconds to read every row of ``table`` with one query (best of ``repeat``); the count."""
    best, count = float("inf"), 0
    for _ in range(repeat):
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            with stopwatch() as elapsed:
                rows = conn.execute(f"SELECT * FROM {table} ORDER BY sequence").fetchall()
            best, count = min(best, elapsed()), len(rows)
        finally:
            conn.close()
    return best, count


def words(n: int) -> str:
    """Text that ScriptedLLM streams as exactly ``n`` text deltas."""
    return "".join(f"w{i} " for i in range(n))


def machine_info() -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        if names:
            cpu = names[0]
    except OSError:
        pass
    versions = []
    for name in ("helix_lab", "langgraph", "langgraph-checkpoint-sqlite", "ipywidgets"):
        try:
            from importlib.metadata import version

            versions.append(f"{name} {version(name)}")
        except Exception:
            versions.append(f"{name} (not installed)")
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cores": str(os.cpu_count()),
        "cpu": cpu,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "os": f"{platform.system()} {platform.release()}",
        "sqlite": sqlite3.sqlite_version,
        "versions": ", ".join(versions),
        "load": " / ".join(f"{x:.2f}" for x in load),
    }


def python_startup(code: str, repeat: int) -> float:
    """Best wall time of ``python -c code`` in a fresh interpreter, over ``repeat`` runs."""
    best = float("inf")
    for _ in range(repeat):
        with stopwatch() as elapsed:
            subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO,
                           stdout=subprocess.DEVNULL)
        best = min(best, elapsed())
    return best


# -- the helix_lab agent -------------------------------------------------------------------


def tool_loop_llm(steps: Callable[[], int], stamps: list[float] | None = None, *,
                  default: bool = False) -> Any:
    """A zero-latency ScriptedLLM: call ``echo`` until ``steps()`` tool calls were made
    in this model's life, then answer ``"done"``.

    Normally it reports fixed usage and keeps no requests, so only the runtime is timed.
    ``default=True`` is ScriptedLLM as a user gets it: its own usage estimate, and its
    default bound on the requests it keeps.
    """
    from helix_lab.llm import ScriptedLLM, Turn, call

    made = [0]
    usage = None if default else TINY_USAGE

    def turn(_request: Any) -> Turn:
        if made[0] < steps():
            made[0] += 1
            return Turn(tool_calls=[call("echo", i=made[0])], usage=usage)
        return Turn(text="done", usage=usage)

    return ScriptedLLM([turn], loop=True, **({} if default else {"keep_requests": 0}))


class HelixRig:
    """helix_lab's in-kernel runtime on file storage, with one agent: ``echo`` in a loop.

    ``steps`` is how many tool steps the model takes before it answers (settable between
    runs); ``stamps`` gets ``time.perf_counter()`` at every tool call; ``note`` (when not
    empty) is appended to the ``notes`` state on every step, to grow the state;
    ``default_llm`` runs ScriptedLLM with its own usage estimate and request bound.
    """

    def __init__(self, storage: Path, *, steps: int, note: str = "",
                 llm_factory: Callable[[], Any] | None = None,
                 default_llm: bool = False) -> None:
        from pydantic import BaseModel

        from helix_lab import Agent, AgentRegistry, ToolContext, create_agent_server, tool
        from helix_lab.runtime import LocalNamespace

        self.steps = steps
        self.stamps: list[float] = []

        class Notes(BaseModel):
            notes: list[str] = []

        stamps = self.stamps

        @tool
        def echo(i: int, ctx: ToolContext) -> int:
            """Echo a number."""
            stamps.append(time.perf_counter())
            if note:
                ctx.update_state(lambda s: s.notes.append(note))
            return i

        self.agent = Agent(name="bench", tools=[echo], state_schema=Notes,
                           max_steps=steps + 1, register=False)
        registry = AgentRegistry()
        registry.register(self.agent)
        factory = llm_factory or (
            lambda: tool_loop_llm(lambda: self.steps, default=default_llm))
        self.server_class = create_agent_server(llm_adapter=lambda env, ctx: factory(),
                                                agents=registry)
        self.namespace = LocalNamespace(self.server_class, storage=str(storage))

    def object_id(self, session_id: str) -> str:
        return self.namespace.id_from_name("session:" + session_id)

    def server(self, session_id: str) -> Any:
        return self.namespace.instance(self.object_id(session_id))

    def db_path(self, session_id: str) -> Path:
        return Path(self.namespace._path(self.object_id(session_id)))

    async def start(self, session_id: str, message: str = "go") -> Any:
        """POST /start (through the object's input gate); the live server object."""
        from helix_lab.runtime import Request

        stub = self.namespace.get(self.object_id(session_id))
        response = await stub.fetch(Request("POST", "/start", json={
            "agentType": "bench", "sessionId": session_id, "input": {"message": message}}))
        if response.status != 200:
            raise RuntimeError(f"/start answered {response.status}: {response.body[:300]!r}")
        return self.server(session_id)

    async def run(self, session_id: str, message: str = "go") -> float:
        """Start a run and wait until it completes; its wall time in seconds."""
        with stopwatch() as elapsed:
            server = await self.start(session_id, message)
            await server.execution.wait()
        if server.execution.status != "completed":
            raise RuntimeError(f"the run ended {server.execution.status}: "
                               f"{server.execution.error}")
        return elapsed()

    async def aclose(self) -> None:
        await self.namespace.aclose()


def on_long_session(ctx: Context, storage: str, session_id: str, steps: int,
                    body: Callable[[HelixRig, Any], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
    """Build one ``steps``-step session on a :class:`HelixRig` under ``ctx.path(storage)``,
    then ``body(rig, handle)`` with its handle on a LocalBackend (the real routes). Returns
    what ``body`` returns, plus ``build``: the build's wall time in seconds."""
    from helix_lab import LocalBackend

    rig = HelixRig(ctx.path(storage), steps=steps)

    async def go() -> dict[str, Any]:
        backend = LocalBackend(rig.namespace)
        try:
            ctx.log(f"building a {steps:,}-step session")
            build = await rig.run(session_id)
            return {"build": build, **await body(rig, backend.handle(session_id, "bench"))}
        finally:
            await backend.aclose()
            await rig.aclose()

    return run(go())


# -- the LangGraph agent -------------------------------------------------------------------


class LangGraphRig:
    """The same agent on LangGraph: ``llm`` and ``tool`` nodes, SqliteSaver on a file."""

    def __init__(self, db_path: Path, *, steps: int, note: str = "") -> None:
        import operator
        from typing import Annotated, TypedDict

        from langchain_core.messages import AIMessage, ToolMessage
        from langgraph.checkpoint.sqlite import SqliteSaver
        from langgraph.graph import END, START, StateGraph
        from langgraph.graph.message import add_messages

        self.steps = steps
        self.stamps: list[float] = []
        self.db_path = db_path
        made = [0]
        stamps = self.stamps

        # The functional form: this module's string annotations would not resolve here.
        State = TypedDict("State", {"messages": Annotated[list, add_messages],  # noqa: UP013
                                    "notes": Annotated[list, operator.add]})

        def llm(state: Any) -> dict[str, Any]:
            if made[0] < self.steps:
                made[0] += 1
                return {"messages": [AIMessage(content="", tool_calls=[
                    {"name": "echo", "args": {"i": made[0]}, "id": f"toolu_{made[0]}"}])]}
            return {"messages": [AIMessage(content="done")]}

        def tool(state: Any) -> dict[str, Any]:
            stamps.append(time.perf_counter())
            calls = state["messages"][-1].tool_calls
            return {"messages": [ToolMessage(content=str(c["args"]["i"]), tool_call_id=c["id"])
                                 for c in calls],
                    "notes": [note] if note else []}

        def route(state: Any) -> str:
            return "tool" if state["messages"][-1].tool_calls else END

        graph = StateGraph(State)
        graph.add_node("llm", llm)
        graph.add_node("tool", tool)
        graph.add_edge(START, "llm")
        graph.add_conditional_edges("llm", route, ["tool", END])
        graph.add_edge("tool", "llm")
        self.conn = sqlite3.connect(str(db_path), check_same_thread=False)
        self.app = graph.compile(checkpointer=SqliteSaver(self.conn))

    def run(self, thread_id: str, message: str = "go", durability: str | None = None) -> float:
        """One ``invoke`` to the final answer; its wall time in seconds.

        ``durability=None`` is LangGraph's default ("async": a step's checkpoint is written
        while the next step runs); ``"sync"`` writes it before the next step starts, as
        helix_lab does."""
        from langchain_core.messages import HumanMessage

        config = {"configurable": {"thread_id": thread_id},
                  "recursion_limit": 2 * self.steps + 10}
        with stopwatch() as elapsed:
            out = self.app.invoke({"messages": [HumanMessage(message)], "notes": []}, config,
                                  **({"durability": durability} if durability else {}))
        if out["messages"][-1].content != "done":
            raise RuntimeError("the LangGraph run did not end with the final answer")
        return elapsed()

    def close(self) -> None:
        self.conn.close()


def rows_per_run(label: str, shown: dict[int, str]) -> list[tuple[str, str]]:
    """Raw rows ``("<label>, <n> steps", shown[n])``, one per run length ``n``."""
    return [(f"{label}, {n:,} steps", text) for n, text in shown.items()]


def window_per_step(stamps: list[float], size: int) -> tuple[float, float]:
    """Seconds per step over the first and the last ``size`` steps (tool-call stamps)."""
    first = (stamps[size] - stamps[0]) / size
    last = (stamps[-1] - stamps[-1 - size]) / size
    return first, last

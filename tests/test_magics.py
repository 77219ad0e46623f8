"""``%load_ext helix_lab``, ``%%helix_agent`` and ``%helix`` through a real IPython shell.

Cells run the way a kernel runs them: transformed by the shell (helix_lab's input
transformer turns ``%helix`` lines and ``%%helix_agent`` cells into awaits) and awaited
with ``run_cell_async`` inside the test's event loop. Each test gets its own working
directory, so ``.helix/`` storage is private to it, and its own freshly loaded
``HelixMagics``; the fixture unloads everything afterwards so nothing leaks into the next
test.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from helpers import eventually
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from notebook_agents import PARTS

import helix_lab
from helix_lab import AgentHandle
from helix_lab.magics import COMMANDS, HelixMagics, transform_cell
from helix_lab.widgets import AgentView
from helix_lab.widgets.render import render_stream

ROOT = Path(__file__).resolve().parents[1]

SLOW_AGENT = "import os" + PARTS + '''
slow = Agent(name="slow", tools=[work], state_schema=Progress, register=True)

def next_turn(request):
    done = len(tool_results(request))
    # While the file GATE is missing, the model waits before step 3 until an interrupt, an
    # abort or an unload cuts the wait: the test always finds the run going.
    wait = 3600 if done == 2 and not os.path.exists(GATE) else 0
    if done < 5:
        return Turn(text=f"part {done + 1} ", tool_calls=[call("work", part=done + 1)],
                    delay=0.25 + wait)
    return Turn(text="all parts done")

script = ScriptedLLM([next_turn], loop=True)
'''


@dataclass
class Cell:
    """What running one cell printed, and the error it raised, if any."""

    out: str
    err: str
    error: BaseException | None
    result: Any


class Kernel:
    """A real InteractiveShell, driven cell by cell like ipykernel drives it."""

    def __init__(self, shell: InteractiveShell, capsys: pytest.CaptureFixture[str],
                 shown: list[Any]) -> None:
        self.shell = shell
        self.capsys = capsys
        self.shown = shown
        """Every object passed to ``display`` (or shown as a cell result)."""

    @property
    def ns(self) -> dict[str, Any]:
        return self.shell.user_ns

    @property
    def magics(self) -> HelixMagics:
        return self.shell.magics_manager.registry["HelixMagics"]

    async def run(self, cell: str) -> Cell:
        self.capsys.readouterr()
        result = await self.shell.run_cell_async(
            cell, store_history=False, transformed_cell=self.shell.transform_cell(cell))
        out, err = self.capsys.readouterr()
        return Cell(out, err, result.error_before_exec or result.error_in_exec, result.result)

    async def ok(self, cell: str) -> Cell:
        ran = await self.run(cell)
        assert ran.error is None, (cell, ran.err, ran.error)
        assert "Traceback" not in ran.out + ran.err
        return ran

    async def usage_error(self, cell: str) -> str:
        """Run a cell that must fail with a one-line UsageError; return its message."""
        ran = await self.run(cell)
        assert isinstance(ran.error, UsageError), (cell, ran.out, ran.err, ran.error)
        assert "Traceback" not in ran.out + ran.err
        lines = ran.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("UsageError: "), ran.err
        return lines[0][len("UsageError: "):]

    def views(self) -> list[AgentView]:
        return [obj for obj in self.shown if isinstance(obj, AgentView)]


async def close_workbench(magics: HelixMagics) -> None:
    """What a kernel shutdown does: stop the views and the runs, close the databases."""
    await magics.aclose()


def forget_extension(shell: InteractiveShell) -> None:
    """Unload helix_lab and drop its magics, so the next test loads it from scratch."""
    shell.extension_manager.unload_extension("helix_lab")
    shell.magics_manager.registry.pop("HelixMagics", None)
    shell.magics_manager.magics["line"].pop("helix", None)
    shell.magics_manager.magics["cell"].pop("helix_agent", None)


@pytest.fixture
def shell(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[InteractiveShell]:
    """The shell, in a private cwd, with its namespace restored after."""
    shell = InteractiveShell.instance()
    assert "HelixMagics" not in shell.magics_manager.registry, "a previous test leaked"
    assert transform_cell not in shell.input_transformers_cleanup
    monkeypatch.chdir(tmp_path)
    names = set(shell.user_ns)
    yield shell
    magics = shell.magics_manager.registry.get("HelixMagics")
    if magics is not None and magics._loop is not None:  # the no-running-loop path
        magics._loop.run_until_complete(close_workbench(magics))
        magics._loop.close()
    forget_extension(shell)
    for name in set(shell.user_ns) - names:
        del shell.user_ns[name]


@pytest.fixture
def shown(shell: InteractiveShell, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Record what ``display`` shows, by wrapping the shell's display formatter."""
    objects: list[Any] = []
    formatter = shell.display_formatter
    real = formatter.format

    def format(obj: Any, *args: Any, **kwargs: Any) -> Any:
        objects.append(obj)
        return real(obj, *args, **kwargs)

    monkeypatch.setattr(formatter, "format", format)
    return objects


@pytest.fixture
async def kernel(shell: InteractiveShell, shown: list[Any],
                 capsys: pytest.CaptureFixture[str]) -> AsyncIterator[Kernel]:
    """A shell with helix_lab loaded; the workbench is closed on the test's loop after."""
    k = Kernel(shell, capsys, shown)
    await k.ok("%load_ext helix_lab")
    yield k
    magics = shell.magics_manager.registry.get("HelixMagics")
    if magics is not None:
        await close_workbench(magics)


@pytest.fixture
async def slow(kernel: Kernel, tmp_path: Path) -> Kernel:
    """The kernel, with the slow scripted agent defined and its model selected; the model
    waits before step 3 while the file ``ns["GATE"]`` is missing."""
    await kernel.ok(f"GATE = {str(tmp_path / 'gate')!r}\n" + SLOW_AGENT)
    ran = await kernel.ok("%helix llm scripted script")
    assert ran.out.strip() == "model: scripted (script)"
    return kernel


def set_gate(kernel: Kernel, is_open: bool) -> None:
    """Let the slow agent's model go past step 2 (``is_open``), or make it wait there."""
    gate = Path(kernel.ns["GATE"])
    if is_open:
        gate.touch()
    else:
        gate.unlink()


async def wait_until(kernel: Kernel, session: str, check: Any, timeout: float = 60.0) -> dict:
    """Poll the session's status until ``check(status)`` holds; return that status."""
    handle = kernel.magics.workbench.local.handle(session)
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        status = await handle.status()
        if check(status):
            return status
        assert asyncio.get_running_loop().time() < deadline, status
        await asyncio.sleep(0.02)


# -- loading ------------------------------------------------------------------------------


async def test_nothing_is_registered_before_load_ext(shell: InteractiveShell, shown: list[Any],
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    k = Kernel(shell, capsys, shown)
    assert shell.find_line_magic("helix") is None
    assert shell.find_cell_magic("helix_agent") is None
    ran = await k.run("%helix agents")
    assert isinstance(ran.error, UsageError)
    assert "not found" in ran.err


async def test_load_ext_registers_both_magics_and_prints_a_banner(kernel: Kernel) -> None:
    shell = kernel.shell
    assert isinstance(kernel.magics, HelixMagics)
    assert shell.find_line_magic("helix").__self__ is kernel.magics
    assert shell.find_cell_magic("helix_agent").__self__ is kernel.magics
    assert transform_cell in shell.input_transformers_cleanup
    # The banner came from the fixture's %load_ext; load once more in a clean state to see it.
    await close_workbench(kernel.magics)
    forget_extension(shell)
    ran = await kernel.ok("%load_ext helix_lab")
    banner = ran.out.strip()
    assert banner.startswith(f"helix_lab {helix_lab.__version__} · model: offline")
    assert "backend: local (sqlite under .helix/)" in banner
    assert banner.endswith("agents: briefing, researcher")
    assert len(banner.splitlines()) == 1


def test_input_transformer_rewrites_only_helix_lines() -> None:
    assert transform_cell(["x = 1\n"]) == ["x = 1\n"]
    assert transform_cell(["%helixir\n"]) == ["%helixir\n"]
    assert transform_cell(["%helix?\n"]) == ["%helix?\n"]
    rewritten = transform_cell(["x = 1\n", "%helix status s1\n"])
    assert rewritten[0] == "x = 1\n"
    assert rewritten[1].startswith("await ") and "run_line(get_ipython(), 'status s1')" in rewritten[1]
    cell = transform_cell(["%%helix_agent researcher --wait\n", "Line one\n", "Line two\n"])
    assert len(cell) == 1 and cell[0].startswith("await ")
    assert "run_cell(get_ipython(), 'researcher --wait', 'Line one\\nLine two\\n')" in cell[0]


# -- %%helix_agent ------------------------------------------------------------------------


async def test_helix_agent_wait_runs_to_the_end(kernel: Kernel, tmp_path: Path) -> None:
    ran = await kernel.ok("%%helix_agent researcher --session s1 --wait\n"
                          "What do sea otters do with stones?")
    assert "session s1 · researcher · completed · 3 steps" in ran.out
    assert "output: Here is what I found about sea otters stones:" in ran.out
    handle = kernel.ns["_helix"]
    assert isinstance(handle, AgentHandle) and handle.session_id == "s1"
    assert handle.run_id
    [view] = kernel.views()
    assert view.session_id == "s1" and view.handle is handle
    assert view.state.status == "completed" and view.state.step_count == 3
    assert "Sea otters use stones as tools" in render_stream(view.state)
    assert (tmp_path / ".helix").is_dir()  # storage lives in this test's cwd


async def test_without_wait_the_cell_returns_while_the_run_goes_on(kernel: Kernel) -> None:
    ran = await kernel.ok("%%helix_agent researcher --session bg\nWhat do sea otters eat?")
    assert "AgentView(agent='researcher', session='bg'" in ran.out  # the view's text/plain
    assert "completed" not in ran.out
    handle = kernel.ns["_helix"]
    status = await handle.status()
    assert status["status"] == "running" and status["isExecuting"]
    [view] = kernel.views()
    assert await handle.result() == (await handle.status())["output"]
    assert (await handle.status())["status"] == "completed"
    await eventually(lambda: view.state.status == "completed")
    assert view.state.step_count == 3


async def test_as_binds_the_handle_to_a_name(kernel: Kernel) -> None:
    await kernel.ok("%%helix_agent researcher --session named --as h --wait\nOtters?")
    assert isinstance(kernel.ns["h"], AgentHandle)
    assert kernel.ns["h"].session_id == "named"
    assert "_helix" not in kernel.ns
    ran = await kernel.ok("print(repr(h))")
    assert ran.out.startswith("<AgentHandle researcher session='named' run='run_")


async def test_state_takes_a_python_expression(kernel: Kernel) -> None:
    await kernel.ok("%%helix_agent researcher --session 'st1' --state \"{'findings': ['given']}\""
                    " --wait\nWhat do otters do with stones?")
    assert kernel.ns["_helix"].session_id == "st1"
    state = await kernel.ns["_helix"].get_state()
    assert state["findings"][0] == "given"
    assert state["queries"] == ["otters stones"]

    await kernel.ok("from helix_lab.examples import ResearchNotes\n"
                    "notes = ResearchNotes(queries=['earlier'])")
    await kernel.ok("%%helix_agent researcher --session st2 --state notes --wait\nOtters?")
    state = await kernel.ns["_helix"].get_state()
    assert state["queries"][0] == "earlier"


async def test_an_agent_defined_in_a_cell_runs_by_name(kernel: Kernel) -> None:
    await kernel.ok("from helix_lab import Agent\n"
                    "mine = Agent(name='mine', system_prompt='Be brief.')")
    ran = await kernel.ok("%helix agents")
    assert "mine" in [line.split()[0] for line in ran.out.splitlines()[2:]]
    ran = await kernel.ok("%%helix_agent mine --session m1 --wait\nTell me about otters.")
    assert "session m1 · mine · completed · 1 steps" in ran.out
    assert "output: You asked about otters." in ran.out


@pytest.mark.parametrize(("cell", "message"), [
    pytest.param("%%helix_agent nobody\nhi",
                 "Unknown agent 'nobody'. Available: briefing, researcher. Define one with "
                 "Agent(name=...) in a cell, or see %helix agents.", id="unknown-agent"),
    pytest.param("%%helix_agent researcher --bogus\nhi",
                 "unrecognized arguments: --bogus (agents: briefing, researcher; options: "
                 "--approach, --as, --backend, --budget, --session, --state, --wait; see "
                 "%%helix_agent?)",
                 id="bad-option"),
    pytest.param("%%helix_agent researcher --state 1+\nhi",
                 "--state '1+' failed: SyntaxError: invalid syntax (<string>, line 1)",
                 id="state-syntax"),
    pytest.param("%%helix_agent researcher --state undefined_name\nhi",
                 "--state 'undefined_name' failed: NameError: name 'undefined_name' is not "
                 "defined", id="state-name"),
    pytest.param("%%helix_agent researcher --state 42\nhi",
                 "--state must give a dict or a pydantic model, got int.", id="state-type"),
    pytest.param("%%helix_agent researcher\n   \n",
                 "The cell body is the message: write it under the %%helix_agent researcher "
                 "line.", id="empty-body"),
    pytest.param("%helix bogus",
                 "Unknown command 'bogus'. Commands: " + ", ".join(COMMANDS) + ".",
                 id="unknown-command"),
    pytest.param("%helix", "the following arguments are required: command, args (commands: "
                 + ", ".join(COMMANDS) + "; options: --agents, --budget, --call, --checkpoint, "
                 "--dry-run, --from-start, --input, --message, --name, --port, --storage, "
                 "--token-env; see %helix help)", id="no-command"),
    pytest.param("%helix status nosuch",
                 "There is no session 'nosuch' on this backend; %helix sessions lists them.",
                 id="unknown-session"),
    pytest.param("%helix status", "No session yet: run a %%helix_agent cell, or name one "
                 "(%helix sessions lists them).", id="no-session-yet"),
])
async def test_mistakes_are_one_line_usage_errors(kernel: Kernel, cell: str, message: str) -> None:
    assert await kernel.usage_error(cell) == message
    assert kernel.views() == []
    assert (await kernel.ok("%helix sessions")).out.strip() == "No sessions yet."


# -- help ---------------------------------------------------------------------------------


async def test_help_lists_every_command(kernel: Kernel) -> None:
    ran = await kernel.ok("%helix help")
    assert ran.out.startswith("::\n\n  %helix [--token-env TOKEN_ENV]")
    for command in COMMANDS:
        assert command in ran.out
    assert "%helix checkpoints [SESSION]" in ran.out
    assert "--from-start" in ran.out
    assert HelixMagics.helix.parser.format_help().strip() == ran.out.strip()


async def test_question_mark_shows_the_argparse_help(kernel: Kernel) -> None:
    ran = await kernel.ok("%helix?")
    assert "Steer helix_lab: sessions, backends, models, serving and deploying." in ran.out
    assert "positional arguments:" in ran.out and "--checkpoint CHECKPOINT" in ran.out
    doc = kernel.shell.find_line_magic("helix").__doc__
    assert "%helix [--token-env TOKEN_ENV]" in doc and "%helix retry [SESSION]" in doc
    cell_doc = kernel.shell.find_cell_magic("helix_agent").__doc__
    assert "%helix_agent [--session SESSION]" in cell_doc and "--wait" in cell_doc
    ran = await kernel.ok("%%helix_agent?")
    assert "Run an agent on the cell body and show a live AgentView." in ran.out


# -- %helix commands ----------------------------------------------------------------------


async def test_agents_sessions_checkpoints_and_usage(kernel: Kernel) -> None:
    ran = await kernel.ok("%helix agents")
    lines = ran.out.splitlines()
    assert lines[0].split() == ["agent", "tools", "description"]
    assert lines[2].startswith("briefing") and "subagent__researcher, __finish__" in lines[2]
    assert lines[3].startswith("researcher")
    assert "search_notes, save_finding, read_note" in lines[3]

    assert (await kernel.ok("%helix sessions")).out.strip() == "No sessions yet."
    await kernel.ok("%%helix_agent researcher --session s1 --wait\nWhat do otters eat?")
    ran = await kernel.ok("%helix sessions")
    assert ran.out.splitlines()[0].split() == ["session", "agent", "status"]
    assert ran.out.splitlines()[2].split() == ["s1", "researcher", "completed"]

    ran = await kernel.ok("%helix checkpoints s1")
    lines = ran.out.splitlines()
    assert lines[0].split() == ["step", "branch", "status", "messages", "checkpoint"]
    rows = [line.split() for line in lines[2:]]
    assert [r[0] for r in rows] == ["0", "1", "2", "3"]
    assert all(r[4].startswith("cpv1-s1-s" + r[0] + "-t") for r in rows)
    assert rows[-1][2] == "completed" and rows[-1][3] == "6"

    ran = await kernel.ok("%helix usage s1")
    lines = ran.out.splitlines()
    assert lines[0].split() == ["by", "calls", "input", "tokens", "output", "tokens", "cost"]
    llm = lines[2].split()
    total = lines[-1].split()
    assert llm[:3] == ["kind", "llm", "3"] and total[:2] == ["total", "3"]
    assert int(llm[3]) > 0 and llm[3:5] == total[2:4]
    # The offline stand-in has no price: "unpriced", never a cost of 0.
    assert llm[5] == "unpriced" and total[4] == "unpriced"
    assert [line.split()[:2] for line in lines[3:-1]] == [
        ["model", "helix-offline"], ["step", "1"], ["step", "2"], ["step", "3"]]

    # No session named: the last one this notebook used.
    assert (await kernel.ok("%helix usage")).out == ran.out


async def test_status_prints_and_shows_a_view_that_replays_history(kernel: Kernel) -> None:
    await kernel.ok("%%helix_agent researcher --session s1 --wait\nWhat do otters eat?")
    kernel.shown.clear()
    ran = await kernel.ok("%helix status s1")
    assert ran.out.startswith("session s1 · researcher · completed · 3 steps\noutput: ")
    [view] = kernel.views()
    assert view.session_id == "s1"
    await eventually(lambda: view.state.status == "completed")
    assert view.state.chunks > 0 and view.state.step_count == 3
    assert view.state.last_sequence == (await view.handle.status())["lastSequence"]
    assert kernel.magics.views["s1"] is view  # the old follower was replaced


async def test_interrupt_resume_retry_abort_on_a_slow_agent(slow: Kernel) -> None:
    k = slow
    await k.ok("%%helix_agent slow --session s2\nDo the five parts.")
    first = k.ns["_helix"]
    await wait_until(k, "s2", lambda s: s["stepCount"] >= 1)
    ran = await k.ok("%helix interrupt s2")
    assert ran.out.startswith("session s2 · slow · interrupted · ")
    status = await first.status()
    assert status["status"] == "interrupted" and status["canResume"]

    set_gate(k, True)
    ran = await k.ok("%helix resume s2")
    assert ran.out.strip() == "resumed session s2"
    resumed = k.ns["_helix"]
    assert resumed is not first and resumed.run_id != first.run_id
    assert await resumed.result() == "all parts done"
    assert await k.usage_error("%helix retry s2") == (
        "Session 's2' completed; there is nothing to retry. Branch from a checkpoint with "
        "/resume mode 'branch'.")

    ran = await k.ok("%helix retry s2 --from-start")
    assert ran.out.strip() == "retrying session s2 (from start)"
    assert await k.ns["_helix"].result() == "all parts done"
    branches = {c["branch"] for c in await first.checkpoints()}
    assert branches == {0, 1}

    # Interrupt with no session named: the last one used. Then retry from the checkpoint.
    set_gate(k, False)
    await k.ok("%%helix_agent slow --session s3\nAgain.")
    await wait_until(k, "s3", lambda s: s["stepCount"] >= 1)
    assert "interrupted" in (await k.ok("%helix interrupt")).out
    set_gate(k, True)
    ran = await k.ok('%helix retry --message "Try again, carefully."')
    assert ran.out.strip() == "retrying session s3 (from checkpoint)"
    assert await k.ns["_helix"].result() == "all parts done"
    said = [m["content"] for m in await k.ns["_helix"].messages() if m["role"] == "user"]
    assert "Try again, carefully." in said  # the quotes are shell syntax, not the message

    set_gate(k, False)
    await k.ok("%%helix_agent slow --session s4\nOnce more.")
    await wait_until(k, "s4", lambda s: s["isExecuting"])
    ran = await k.ok("%helix abort s4")
    assert ran.out.startswith("session s4 · slow · failed · ")
    assert "error: Aborted" in ran.out
    message = await k.usage_error("%helix resume s4")
    assert message.startswith("Session 's4' is failed and cannot be resumed.")
    assert await k.usage_error("%helix interrupt s4") == (
        "Session 's4' is failed; there is nothing to interrupt.")


async def test_llm_switches_the_model(kernel: Kernel, tmp_path: Path) -> None:
    assert (await kernel.ok("%helix llm")).out.startswith("model: offline")
    ran = await kernel.ok("%helix llm offline")
    assert ran.out.strip() == "model: offline (deterministic stand-in)"
    assert await kernel.usage_error("%helix llm replay missing.jsonl") == (
        "No cassette at 'missing.jsonl'; record one with %helix llm record PATH.")
    message = await kernel.usage_error("%helix llm anthropic")
    assert "ANTHROPIC_API_KEY is not set" in message
    assert (await kernel.usage_error("%helix llm gpt9")).startswith("Unknown model 'gpt9'.")
    assert await kernel.usage_error("%helix llm scripted nothing_here") == (
        "No variable 'nothing_here'; define nothing_here = ScriptedLLM([...]) first.")
    await kernel.ok("not_a_model = 3")
    assert await kernel.usage_error("%helix llm scripted not_a_model") == (
        "scripted (not_a_model) is not an LLM adapter (it has no stream() method).")
    assert kernel.magics.workbench.llm.label == "offline (deterministic stand-in)"

    # Record a run, then replay it offline: same answer, from the cassette.
    ran = await kernel.ok("%helix llm record tape.jsonl")
    assert ran.out.strip() == "model: offline (deterministic stand-in), recorded to tape.jsonl"
    recorded = await kernel.ok("%%helix_agent researcher --session r1 --wait\nOtters and stones?")
    assert (tmp_path / "tape.jsonl").is_file()
    ran = await kernel.ok("%helix llm replay tape.jsonl")
    assert ran.out.strip() == "model: replay of tape.jsonl"
    replayed = await kernel.ok("%%helix_agent researcher --session r2 --wait\nOtters and stones?")
    assert replayed.out.replace("r2", "r1") == recorded.out


async def test_sessions_survive_a_kernel_restart(kernel: Kernel) -> None:
    ran = await kernel.ok("%%helix_agent researcher --session s1 --wait\nWhat do otters eat?")
    assert "session s1 · researcher · completed · 3 steps" in ran.out
    first = kernel.magics
    # The kernel goes away: its magics, workbench and views with it. A new one loads.
    await close_workbench(first)
    forget_extension(kernel.shell)
    kernel.ns.pop("_helix", None)
    await kernel.ok("%load_ext helix_lab")
    assert kernel.magics is not first
    assert kernel.magics.workbench.sessions == {}
    ran = await kernel.ok("%helix status s1")
    assert ran.out.startswith("session s1 · researcher · completed · 3 steps")
    ran = await kernel.ok("%helix sessions")
    assert ran.out.splitlines()[2].split() == ["s1", "researcher", "completed"]
    view = kernel.views()[-1]
    await eventually(lambda: view.state.status == "completed")
    assert view.state.step_count == 3


def helix_tasks() -> list[asyncio.Task[Any]]:
    """Unfinished tasks running helix_lab code (the runs, the views' followers)."""
    package = str(Path(helix_lab.__file__).parent)
    return [t for t in asyncio.all_tasks() if not t.done() and t is not asyncio.current_task()
            and getattr(t.get_coro(), "cr_code", None) is not None
            and t.get_coro().cr_code.co_filename.startswith(package)]


async def test_unload_ext_stops_runs_and_views_and_a_reload_finds_the_run_resumable(
        slow: Kernel) -> None:
    k = slow
    await k.ok("%%helix_agent slow --session u1\nDo the five parts.")
    await wait_until(k, "u1", lambda s: s["stepCount"] >= 1)
    magics = k.magics
    [view] = k.views()
    assert view.following and helix_tasks()

    await k.ok("%unload_ext helix_lab")
    assert magics.closing is not None
    await asyncio.wait_for(magics.closing, timeout=60)
    assert not view.following
    assert helix_tasks() == []
    assert magics.views == {}

    forget_extension(k.shell)
    await k.ok("%load_ext helix_lab")
    ran = await k.ok("%helix status u1")
    assert ran.out.startswith("session u1 · slow · interrupted · ")  # the cut run, recovered
    handle = k.magics.workbench.local.handle("u1")
    assert await handle.can_resume()


def test_magics_called_directly_without_a_loop_use_a_private_loop(
        shell: InteractiveShell, shown: list[Any], capsys: pytest.CaptureFixture[str]) -> None:
    shell.run_line_magic("load_ext", "helix_lab")
    capsys.readouterr()
    shell.run_cell_magic("helix_agent", "researcher --session d1 --wait", "What do otters eat?")
    assert "session d1 · researcher · completed · 3 steps" in capsys.readouterr().out
    shell.run_line_magic("helix", "checkpoints d1")
    assert len(capsys.readouterr().out.strip().splitlines()) == 2 + 4
    with pytest.raises(UsageError, match="Unknown command 'nope'"):
        shell.run_line_magic("helix", "nope")


# -- the package surface ------------------------------------------------------------------


def imported_after(statement: str) -> list[str]:
    code = (f"{statement}; import sys; print(sorted({{m.split('.')[0] for m in sys.modules}}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True, timeout=60).stdout
    return json.loads(out.replace("'", '"'))


def test_import_helix_lab_stays_light() -> None:
    heavy = {"IPython", "ipywidgets", "anthropic", "httpx", "pydantic", "traitlets"}
    loaded = imported_after("import helix_lab")
    assert "helix_lab" in loaded
    assert sorted(heavy & set(loaded)) == []


def test_the_runtime_knows_nothing_of_jupyter() -> None:
    loaded = imported_after("import helix_lab.runtime")
    assert "helix_lab" in loaded and "pydantic" in loaded  # the import did happen
    jupyter = [m for m in loaded if m in {"IPython", "ipywidgets", "ipykernel", "traitlets",
                                          "comm", "widgetsnbextension"}
               or m.startswith("jupyter")]
    assert jupyter == []


def test_all_is_honest() -> None:
    for name in helix_lab.__all__:
        assert getattr(helix_lab, name) is not None, name
    assert sorted(helix_lab.__all__) == sorted(set(helix_lab.__all__))
    assert set(dir(helix_lab)) >= set(helix_lab.__all__)
    from helix_lab import magics, widgets, workbench

    for module in (magics, widgets, workbench):
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.{name}"


async def test_a_magic_in_the_load_ext_cell_says_to_use_its_own_cell(
        shell: InteractiveShell, shown: list[Any], capsys: pytest.CaptureFixture[str]) -> None:
    # The transformer exists only from the next cell on, so this call is a plain sync call
    # inside the running loop: it cannot wait, and must say so rather than lose its output.
    kernel = Kernel(shell, capsys, shown)
    ran = await kernel.run("%load_ext helix_lab\n%helix llm")
    assert isinstance(ran.error, UsageError)
    assert "in a cell of their own" in str(ran.error)
    assert "Traceback" not in ran.out + ran.err
    assert "model: offline" in (await kernel.ok("%helix llm")).out
    await close_workbench(kernel.magics)


async def test_use_of_an_unreachable_server_keeps_the_backend(
        kernel: Kernel, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HELIX_TEST_TOKEN", "not-shown")
    message = await kernel.usage_error(
        "%helix use http://127.0.0.1:9 --token-env HELIX_TEST_TOKEN")
    assert "is unreachable" in message and "not-shown" not in message
    assert kernel.magics.workbench.backend_name == "local"
    assert "local" in (await kernel.ok("%helix use local")).out

"""IPython magics: ``%%helix_agent`` runs an agent in a cell, ``%helix`` steers sessions.

::

    %load_ext helix_lab

    %%helix_agent researcher --session otters
    What do sea otters do with stones?

    %helix status otters          # summary, and a live view of the session
    %helix checkpoints otters     # every checkpoint of every branch
    %helix approve otters --input '{"to": "me@example.com"}'   # a paused tool call
    %helix deny otters "not this one"
    %helix step 2 otters          # what the model saw and returned at step 2
    %helix usage otters           # tokens and dollars, by kind, model and step
    %helix diff otters otters@1   # where two branches (or two sessions) part
    %helix export otters otters.helix   # one file to send; %helix import otters.helix
    %helix interrupt | resume | retry | abort [SESSION]
    %helix llm anthropic          # real model (key from ANTHROPIC_API_KEY)
    %helix help

The run is a task on the kernel's event loop: the cell returns as soon as the run has
started and the view keeps updating while you work in other cells. ``--wait`` holds the
cell until the run ends. So that ``%helix`` commands can wait for the backend without
blocking the loop, an input transformer turns each top-level ``%helix`` line and each
``%%helix_agent`` cell into an ``await`` of the same code the magic runs.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import Callable, Coroutine
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from IPython.display import display

from .errors import BackendError, HelixError
from .workbench import Workbench

__all__ = ["HelixMagics", "load_ipython_extension", "unload_ipython_extension"]

COMMANDS = ("agents", "sessions", "status", "interrupt", "abort", "resume", "retry",
            "approve", "deny", "step", "checkpoints", "usage", "use", "llm", "serve", "deploy",
            "diff", "otel", "export", "import", "help")
_LINE = re.compile(r"^%helix(\s.*)?$")


def _await_line(line: str) -> str:
    return ("await __import__('helix_lab.magics', fromlist=['_']).run_line("
            f"get_ipython(), {line!r})\n")


def transform_cell(lines: list[str]) -> list[str]:
    """Rewrite ``%helix`` lines and ``%%helix_agent`` cells into awaits (see module doc)."""
    if lines and lines[0].startswith("%%helix_agent"):
        first = lines[0].rstrip("\n")
        if first.endswith("?"):
            return lines
        args = first[len("%%helix_agent"):].strip()
        body = "".join(lines[1:])
        return [f"await __import__('helix_lab.magics', fromlist=['_']).run_cell("
                f"get_ipython(), {args!r}, {body!r})\n"]
    if not any(_LINE.match(line.rstrip("\n")) for line in lines):
        return lines
    out = []
    for line in lines:
        stripped = line.rstrip("\n")
        if _LINE.match(stripped) and not stripped.endswith("?"):
            out.append(_await_line(stripped[len("%helix"):].strip()))
        else:
            out.append(line)
    return out


def _magics(shell: Any) -> HelixMagics:
    magics = shell.magics_manager.registry.get("HelixMagics")
    if magics is None:
        raise UsageError("helix_lab is not loaded: run %load_ext helix_lab first.")
    return magics


async def run_line(shell: Any, line: str) -> Any:
    """What ``%helix LINE`` does, awaited on the kernel's loop."""
    return await _magics(shell).helix_async(line)


async def run_cell(shell: Any, line: str, body: str) -> Any:
    """What a ``%%helix_agent LINE`` cell does, awaited on the kernel's loop."""
    return await _magics(shell).agent_cell_async(line, body)


def _unquote(value: Any) -> Any:
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def _choices(magic: Any, agent_types: Callable[[], list[str]]) -> str:
    """What a magic accepts, in one line: its commands or agents, and its options."""
    parser = magic.parser
    options = ", ".join(sorted(o for a in parser._actions for o in a.option_strings
                               if o.startswith("--") and o != "--help"))
    if magic.__name__ == "helix":
        return f"commands: {', '.join(COMMANDS)}; options: {options}; see %helix help"
    agents = ", ".join(agent_types()) or "none yet"
    return f"agents: {agents}; options: {options}; see %%helix_agent?"


def _parse(magic: Any, line: str, agent_types: Callable[[], list[str]]) -> Any:
    """``parse_argstring``, minus the quotes it leaves around quoted values.

    IPython splits magic lines like a non-POSIX shell, which keeps the quote characters:
    ``--message "go on"`` would arrive as ``'"go on"'`` and ``--state "{'a': 1}"`` would
    evaluate to a str. Quoting is the only way to pass a value with spaces, so drop them.
    """
    try:
        args = parse_argstring(magic, line)
    except UsageError as exc:
        # argparse names the problem; add what would have been right.
        raise UsageError(f"{exc} ({_choices(magic, agent_types)})") from None
    for name, value in vars(args).items():
        if isinstance(value, list):
            setattr(args, name, [_unquote(v) for v in value])
        else:
            setattr(args, name, _unquote(value))
    return args


def _dollars(group: dict[str, Any]) -> str:
    """A rollup group's cost: dollars, "unpriced", or dollars plus unpriced calls."""
    cost = group.get("costUsd")
    if cost is None:
        return "unpriced" if group.get("unpricedCalls") else "$0"
    text = f"${cost:.6f}"
    return text + f" + {group['unpricedCalls']} unpriced" if group.get("unpricedCalls") else text


def _step_text(view: dict[str, Any], width: int = 100) -> str:
    """``%helix step``: a step as plain text, each message on a line or two."""

    def short(value: Any) -> str:
        text = value if isinstance(value, str) else json.dumps(value)
        text = " ".join(text.split())
        return text if len(text) <= width else text[: width - 1] + "…"

    request, response, usage, timing = (view["request"], view["response"], view["usage"],
                                        view["timing"])
    money = _dollars({"costUsd": usage.get("costUsd"),
                      "unpricedCalls": int(usage.get("costUsd") is None)})
    lines = [f"step {view['step']} · branch {view['branch']} · {view.get('model')} · "
             f"{usage['inputTokens']} in / {usage['outputTokens']} out tokens · {money} · "
             f"first token {timing.get('firstTokenMs')} ms · {timing['durationMs']} ms",
             f"system: {short(request['system'])}",
             f"tools: {', '.join(t['name'] for t in request['tools']) or 'none'}",
             f"sent {request['messageCount']} messages"
             + (f" (the last {len(request['messages'])} shown)"
                if request.get("messagesOmitted") else "") + ":"]
    for message in request["messages"]:
        lines.append(f"  {message['role']}: {short(message['content'])}")
    if response["thinking"]:
        lines.append(f"thinking: {short(response['thinking'])}")
    lines.append(f"text: {short(response['text'])}")
    for call in response["toolCalls"]:
        lines.append(f"tool call {call['toolName']} ({call['toolCallId']}): "
                     f"{short(call['input'])}")
    for approval in view.get("approvals", []):
        lines.append(f"{approval['action']} {approval['toolName']}: the model asked "
                     f"{short(approval['modelInput'])}")
    for result in view["toolResults"]:
        flag = "error" if result["isError"] else "result"
        lines.append(f"{flag} {result['toolCallId']}: {short(result['output'])}")
    return "\n".join(lines)


def _workflow_steps(status: dict[str, Any]) -> str:
    """The workflow instance of a session and its stored steps, as a table."""
    rows = [[s["name"], s["count"], s["type"], s["state"], s["attempts"]]
            for s in status.get("steps", [])]
    head = f"workflow instance {status.get('instanceId')} · {status.get('instanceStatus')}"
    return head + "\n" + (_table(rows, ["step", "count", "type", "state", "attempts"])
                          if rows else "no steps stored yet")


def _table(rows: list[list[Any]], header: list[str]) -> str:
    cells = [header, *[[str(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
             for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


@magics_class
class HelixMagics(Magics):
    """The helix_lab magics; one :class:`~helix_lab.workbench.Workbench` per shell."""

    def __init__(self, shell: Any, workbench: Workbench | None = None) -> None:
        super().__init__(shell)
        self.workbench = workbench or Workbench(namespace=shell.user_ns)
        self.views: dict[str, Any] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self.closing: asyncio.Future[None] | None = None
        """Set by ``%unload_ext``: the closing of the views and the workbench."""

    # -- running async code from a plain magic call ----------------------------------------

    def _sync(self, coro: Coroutine[Any, Any, Any]) -> Any:
        """Run ``coro`` when the magic was called directly rather than through the
        transformer: on a private loop if none is running, else as a task of this one."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
            return self._loop.run_until_complete(coro)
        coro.close()
        # Inside a running loop a sync call cannot wait, and a task would print into some
        # later cell; the transformer only sees cells that start after %load_ext.
        raise UsageError("Run %helix and %%helix_agent in a cell of their own, after the "
                         "cell with %load_ext helix_lab (they are awaited on the kernel's loop).")

    def _close_soon(self) -> asyncio.Future[None] | None:
        """Run :meth:`aclose` as a task of the running loop, or to the end on the private
        loop when there is none (magics called directly); ``None`` once done."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = self._loop
            if loop is None or loop.is_closed():
                loop = asyncio.new_event_loop()
            loop.run_until_complete(self.aclose())
            loop.close()
            self._loop = None
            return None
        task = loop.create_task(self.aclose())
        _closing.add(task)
        task.add_done_callback(_closing.discard)
        return task

    # -- %%helix_agent ---------------------------------------------------------------------

    @magic_arguments()
    @argument("name", help="the agent type, e.g. researcher (%%helix agents lists them)")
    @argument("--session", help="session id; reuse one to continue its conversation")
    @argument("--backend", help="'local' or 'remote' (default: the one %%helix use chose)")
    @argument("--state", help="a Python expression for the initial state (dict or model)")
    @argument("--as", dest="var", default="_helix",
              help="bind the AgentHandle to this variable (default: _helix)")
    @argument("--wait", action="store_true", help="hold the cell until the run ends")
    @argument("--approach", choices=("durable-objects", "workflows"), default=None,
              help="durable-objects (default): one object per session; workflows: each "
              "model and tool call a memoized step.do, replayed, not repeated, after a crash")
    @argument("--budget", type=float, default=None,
              help="stop softly once the session has spent this many US dollars")
    @cell_magic
    def helix_agent(self, line: str, cell: str) -> Any:
        """Run an agent on the cell body and show a live AgentView."""
        return self._sync(self.agent_cell_async(line, cell))

    async def agent_cell_async(self, line: str, body: str) -> None:
        args = _parse(self.helix_agent, line, self.workbench.agent_types)
        message = body.strip()
        if not message:
            raise UsageError("The cell body is the message: write it under the "
                             f"%%helix_agent {args.name} line.")
        wb = self.workbench
        backend = self._backend(args.backend, args.approach)
        available = await self._agent_types(backend)
        if args.name not in available:
            raise UsageError(f"Unknown agent {args.name!r}. Available: "
                             f"{', '.join(available) or 'none'}. Define one with "
                             "Agent(name=...) in a cell, or see %helix agents.")
        state = self._eval_state(args.state) if args.state else None
        after = 0
        if args.session:
            after = (await self._call(backend.handle(args.session).status())).get(
                "lastSequence", 0)
        if args.budget is not None and args.budget <= 0:
            raise UsageError(f"--budget must be a positive number of dollars, got {args.budget}.")
        handle = await self._call(backend.start(args.name, message, session_id=args.session,
                                                state=state, max_cost_usd=args.budget))
        wb.remember(handle.session_id, args.name, args.approach)
        wb.trace(handle, after)
        self.shell.user_ns[args.var] = handle
        view = self._view(handle, after)
        display(view)
        if args.wait:
            async for _ in handle.stream(after):
                pass
            await asyncio.sleep(0)  # let the view fold in the last chunks
            view.flush()
            status = await self._call(handle.status())
            print(self._status_line(status))

    def _eval_state(self, expr: str) -> dict[str, Any]:
        try:
            value = self.shell.ev(expr)
        except Exception as exc:
            raise UsageError(f"--state {expr!r} failed: {type(exc).__name__}: {exc}") from None
        dump = getattr(value, "model_dump", None)
        if dump is not None:
            value = dump(mode="json")
        if not isinstance(value, dict):
            raise UsageError(f"--state must give a dict or a pydantic model, got "
                             f"{type(value).__name__}.")
        return value

    def _view(self, handle: Any, after: int) -> Any:
        from .widgets.agent_view import AgentView

        old = self.views.pop(handle.session_id, None)
        if old is not None:
            old.stop()  # one live follower per session is enough; the old drawing stays
        view = AgentView(handle)
        view.follow(after)
        self.views[handle.session_id] = view
        return view

    async def aclose(self) -> None:
        """Stop every view and close the workbench (its runs, databases and clients)."""
        views, self.views = list(self.views.values()), {}
        for view in views:
            view.stop()
        await self.workbench.aclose()

    # -- %helix ----------------------------------------------------------------------------

    @magic_arguments()
    @argument("command", help="one of: " + ", ".join(COMMANDS))
    @argument("args", nargs="*", help="the command's arguments (a session id, a URL, ...)")
    @argument("--token-env", help="use: the environment variable that holds the token")
    @argument("--message", help="resume/retry: a message to add")
    @argument("--checkpoint", help="resume: fork from this checkpoint id")
    @argument("--call", help="approve: the waiting tool call id (default: every waiting call)")
    @argument("--input", help="approve: the arguments to run the call with, as JSON")
    @argument("--budget", type=float, default=None,
              help="resume: a new budget in US dollars for the session's spend")
    @argument("--from-start", action="store_true", help="retry: from the very start")
    @argument("--dry-run", action="store_true", help="deploy: build and validate only")
    @argument("--name", help="deploy: the Worker's name")
    @argument("--agents", help="deploy/serve: the module that defines the agents")
    @argument("--port", type=int, default=8787, help="serve: the port (default 8787)")
    @argument("--storage", help="serve: where the server keeps its sqlite files")
    @line_magic
    def helix(self, line: str) -> Any:
        """Steer helix_lab: sessions, backends, models, serving and deploying.

        %helix agents                      the agents you can run
        %helix sessions                    sessions stored on the local backend
        %helix status [SESSION]            status, and a live view of the session
        %helix interrupt|abort [SESSION]   soft / hard stop
        %helix resume [SESSION] [--message M] [--checkpoint ID]
        %helix retry [SESSION] [--from-start] [--message M]
        %helix approve [SESSION] [--call ID] [--input JSON]   a call waiting for approval
        %helix deny [SESSION] MESSAGE      refuse it; the model reads MESSAGE
        %helix step N [SESSION]            what the model saw and returned at step N
        %helix checkpoints [SESSION]       every checkpoint of every branch
        %helix usage [SESSION]             tokens and dollars by kind, model and step
        %helix diff A B                    where two runs part; A, B: SESSION, SESSION@BRANCH
                                           or a checkpoint id
        %helix otel [URL | off]            export runs as OpenTelemetry GenAI spans (OTLP/HTTP;
                                           endpoint from OTEL_EXPORTER_OTLP_* by default)
        %helix export [SESSION] PATH       write the session to one .helix file
        %helix import PATH                 open a .helix file here (on the local backend)
        %helix use local | URL --token-env VAR
        %helix llm offline | scripted VAR | replay PATH | record PATH | anthropic | openai URL MODEL
        %helix llm auto [PATH]             Claude if ANTHROPIC_API_KEY is set, else replay PATH
        %helix serve [--port 8787]         run `helix serve` in the background
        %helix deploy [--dry-run] [--name N] [--agents MODULE]
        """
        return self._sync(self.helix_async(line))

    async def helix_async(self, line: str) -> Any:
        args = _parse(self.helix, line, list)
        command = args.command
        if command not in COMMANDS:
            raise UsageError(f"Unknown command {command!r}. Commands: {', '.join(COMMANDS)}.")
        return await getattr(self, f"_cmd_{command}")(args)

    async def _cmd_help(self, args: Any) -> None:
        print(self.helix.parser.format_help())

    def _backend(self, name: str | None = None, approach: str | None = None) -> Any:
        try:
            return self.workbench.backend_for(name, approach)
        except HelixError as exc:
            raise UsageError(str(exc)) from None

    async def _call(self, awaitable: Any) -> Any:
        """Await a backend call; its errors become one-line usage errors."""
        try:
            return await awaitable
        except BackendError as exc:
            raise UsageError(exc.message) from None
        except HelixError as exc:
            raise UsageError(str(exc)) from None

    async def _agent_types(self, backend: Any) -> list[str]:
        if backend is self.workbench.local or backend is self.workbench._workflows:
            return self.workbench.agent_types()
        return await self._call(backend.agents())

    def _handle(self, args: Any) -> Any:
        return self._handle_of(args.args[0] if args.args else None)

    def _handle_of(self, session_id: str | None) -> Any:
        try:
            session = self.workbench.resolve_session(session_id)
        except HelixError as exc:
            raise UsageError(str(exc)) from None
        return self.workbench.backend_of(session).handle(session,
                                                         self.workbench.sessions.get(session))

    @staticmethod
    def _status_line(status: dict[str, Any]) -> str:
        line = (f"session {status.get('sessionId')} · {status.get('agentType')} · "
                f"{status['status']} · {status.get('stepCount', 0)} steps")
        if "output" in status:
            output = status["output"]
            text = output if isinstance(output, str) else json.dumps(output)
            line += f"\noutput: {text}"
        if status.get("error"):
            line += f"\nerror: {status['error']}"
        return line

    async def _cmd_agents(self, args: Any) -> None:
        backend = self._backend()
        if backend is self.workbench.local:
            rows = []
            for name in self.workbench.agent_types():
                agent = self.workbench.registry.get(name)
                tools = ", ".join(s["name"] for s in agent.tool_specs()) if agent else "(factory)"
                rows.append([name, tools, (agent.description if agent else "")[:60]])
            print(_table(rows, ["agent", "tools", "description"]))
        else:
            print("\n".join(await self._agent_types(backend)))

    async def _cmd_sessions(self, args: Any) -> None:
        if self.workbench.backend_name != "local":
            raise UsageError("Listing sessions works on the local backend; a Worker keeps no "
                             "index of its Durable Objects.")
        rows = [[s["sessionId"], s["agentType"], s["status"]]
                for s in self.workbench.stored_sessions()]
        print(_table(rows, ["session", "agent", "status"]) if rows else "No sessions yet.")

    async def _cmd_status(self, args: Any) -> None:
        handle = self._handle(args)
        status = await self._call(handle.status())
        if status.get("sessionId") is None:
            raise UsageError(f"There is no session {handle.session_id!r} on this backend; "
                             "%helix sessions lists them.")
        print(self._status_line(status))
        if status.get("approach") == "workflows":
            print(_workflow_steps(status))
        self.workbench.remember(handle.session_id, status.get("agentType"))
        display(self._view(handle.backend.handle(handle.session_id, status["agentType"]), 0))

    async def _cmd_interrupt(self, args: Any) -> None:
        status = await self._call(self._handle(args).interrupt("interrupted from %helix"))
        print(self._status_line(status))

    async def _cmd_abort(self, args: Any) -> None:
        status = await self._call(self._handle(args).abort("aborted from %helix"))
        print(self._status_line(status))

    async def _traced_from(self, handle: Any) -> int:
        """The sequence a run about to start will follow, when its runs are traced."""
        if self.workbench.otel is None:
            return 0
        return int((await self._call(handle.status())).get("lastSequence") or 0)

    async def _cmd_resume(self, args: Any) -> None:
        handle = self._handle(args)
        after = await self._traced_from(handle)
        if args.checkpoint:
            new = await self._call(handle.resume("from_checkpoint", checkpoint_id=args.checkpoint,
                                                 message=args.message))
        elif args.message:
            new = await self._call(handle.resume("with_message", message=args.message,
                                                 max_cost_usd=args.budget))
        else:
            new = await self._call(handle.resume(max_cost_usd=args.budget))
        self.shell.user_ns["_helix"] = new
        self.workbench.trace(new, after)
        print(f"resumed session {new.session_id}")

    async def _cmd_retry(self, args: Any) -> None:
        handle = self._handle(args)
        mode = "from_start" if args.from_start else "from_checkpoint"
        after = await self._traced_from(handle)
        new = await self._call(handle.retry(mode, message=args.message))
        self.shell.user_ns["_helix"] = new
        self.workbench.trace(new, after)
        print(f"retrying session {new.session_id} ({mode.replace('_', ' ')})")

    async def _cmd_checkpoints(self, args: Any) -> None:
        handle = self._handle(args)
        checkpoints = await self._call(handle.checkpoints())
        rows = [[c["step"], c["branch"], c["status"], c["messageCount"], c["checkpointId"]]
                for c in checkpoints]
        print(_table(rows, ["step", "branch", "status", "messages", "checkpoint"]))

    async def _cmd_usage(self, args: Any) -> None:
        usage = await self._call(self._handle(args).usage())
        rollup = usage["rollup"]
        rows = []
        for label, groups in (("kind", rollup["byKind"]), ("model", rollup.get("byModel", {})),
                              ("step", rollup.get("byStep", {}))):
            order = sorted(groups, key=lambda k: (int(k) if k.isdigit() else 0, k))
            rows += [[f"{label} {key}", v["calls"], v["inputTokens"], v["outputTokens"],
                      _dollars(v)] for key, v in ((k, groups[k]) for k in order)]
        total = rollup["total"]
        rows.append(["total", rollup["entries"], total["inputTokens"], total["outputTokens"],
                     _dollars(total)])
        print(_table(rows, ["by", "calls", "input tokens", "output tokens", "cost"]))

    async def _cmd_approve(self, args: Any) -> None:
        handle = self._handle(args)
        edited = None
        if args.input is not None:
            try:
                edited = json.loads(args.input)
            except ValueError as exc:
                raise UsageError(f"--input is not valid JSON ({exc}); quote it: "
                                 """--input '{"to": "me@example.com"}'""") from None
        await self._decide(handle, args.call, "approved" + (
            " with the edited input" if edited is not None else ""),
            handle.approve(args.call, edited))

    async def _cmd_deny(self, args: Any) -> None:
        if not args.args:
            raise UsageError('Usage: %helix deny [SESSION] MESSAGE, e.g. %helix deny '
                             '"not to this address"')
        *session, message = args.args
        if len(session) > 1:
            raise UsageError("Quote a message with spaces: %helix deny SESSION \"why not\"")
        args.args = session
        handle = self._handle(args)
        await self._decide(handle, args.call, "denied", handle.deny(message, args.call))

    async def _decide(self, handle: Any, call: str | None, verb: str, decision: Any) -> None:
        """Make a decision and say what it was about and what still waits."""
        from .runtime.handle import describe_calls

        try:
            pending = await self._call(handle.pending_approvals())
        except BaseException:
            decision.close()
            raise
        new = await self._call(decision)
        self.shell.user_ns["_helix"] = new
        decided = [p for p in pending if call is None or p["toolCallId"] == call]
        waiting = [p for p in pending if p not in decided]
        print(f"{verb}: {describe_calls(decided)}; " + (
            "still waiting: " + describe_calls(waiting)
            if waiting else f"the run goes on (session {new.session_id})"))

    async def _cmd_step(self, args: Any) -> None:
        if not args.args or not args.args[0].isdigit():
            raise UsageError("Usage: %helix step N [SESSION], e.g. %helix step 2")
        step, args.args = int(args.args[0]), args.args[1:]
        view = await self._call(self._handle(args).step(step))
        print(_step_text(view))

    async def _cmd_diff(self, args: Any) -> None:
        if len(args.args) != 2:
            raise UsageError("Usage: %helix diff A B, each a session id, SESSION@BRANCH (the "
                             "head of that branch) or a checkpoint id (cpv1-...).")
        from .client.diff import diff_runs

        diff = await self._call(diff_runs(*args.args, backend=self._backend()))
        self.shell.user_ns["_helix_diff"] = diff
        print(diff)

    async def _cmd_export(self, args: Any) -> None:
        if len(args.args) not in (1, 2):
            raise UsageError("Usage: %helix export [SESSION] PATH (a .helix file).")
        from .session_file import export_session

        *named, path = args.args
        handle = self._handle_of(named[0] if named else None)
        manifest = await self._call(export_session(handle, path))
        rows = {t: v["rows"] for t, v in manifest["tables"].items()}
        children = len(manifest.get("children") or [])
        print(f"exported session {manifest['sessionId']} ({manifest['agentType']}, "
              f"{manifest.get('status')}; {rows.get('helix_checkpoints', 0)} checkpoints, "
              f"{rows.get('helix_chunks', 0)} chunks"
              + (f"; {children} sub-agent sessions" if children else "") + f") to {path}")

    async def _cmd_import(self, args: Any) -> None:
        if len(args.args) != 1:
            raise UsageError("Usage: %helix import PATH (a .helix file from %helix export).")
        from .session_file import import_session

        wb = self.workbench
        file = await self._call(import_session(args.args[0], wb.namespace))
        manifest = file.manifest
        wb.remember(file.session_id, file.agent_type)
        print(f"imported session {file.session_id} ({file.agent_type}, "
              f"{manifest.get('status')}; exported by helix_lab {manifest.get('helixLab')}) "
              f"into the local backend ({wb.storage}/)")
        if file.agent_type not in wb.agent_types():
            print(f"note: no agent {file.agent_type!r} is defined here: the session can be "
                  "viewed, diffed and searched; to fork it, define the agent and replay its "
                  f"model with ReplayLLM.from_session({args.args[0]!r}).")
        handle = wb.local.handle(file.session_id, file.agent_type)
        self.shell.user_ns["_helix"] = handle
        display(self._view(handle, 0))

    async def _cmd_otel(self, args: Any) -> None:
        wb = self.workbench
        target = args.args[0] if args.args else None
        if target == "off":
            await wb.stop_otel()
            print("otel: off")
            return
        if target == "status":
            print(f"otel: on, {wb.otel.label}" if wb.otel else "otel: off")
            return
        try:
            label = await wb.use_otel(target)
        except HelixError as exc:
            raise UsageError(str(exc)) from None
        print(f"otel: runs started from now on are exported as GenAI spans, {label}")

    async def _cmd_use(self, args: Any) -> None:
        if not args.args:
            raise UsageError("Usage: %helix use local | %helix use URL --token-env VAR")
        target = args.args[0]
        if target == "local":
            self.workbench.use_local()
            print(f"backend: {self.workbench.describe_backend()}")
            return
        token = None
        if args.token_env:
            token = os.environ.get(args.token_env)
            if not token:
                raise UsageError(f"The environment variable {args.token_env} is empty; set it "
                                 "to the server's token (never paste tokens into a notebook).")
        agents = await self._call(self.workbench.use_remote(target, token))
        print(f"backend: {self.workbench.describe_backend()}; agents: {', '.join(agents)}")

    async def _cmd_llm(self, args: Any) -> None:
        if not args.args:
            print(f"model: {self.workbench.llm.label}")
            return
        kind, *rest = args.args
        try:
            if kind == "scripted":
                if len(rest) != 1:
                    raise UsageError("Usage: %helix llm scripted VAR (a ScriptedLLM in a variable)")
                if rest[0] not in self.shell.user_ns:
                    raise UsageError(f"No variable {rest[0]!r}; define "
                                     f"{rest[0]} = ScriptedLLM([...]) first.")
                choice = self.workbench.use_adapter(self.shell.user_ns[rest[0]],
                                                    f"scripted ({rest[0]})")
            else:
                choice = self.workbench.use_llm(kind, *rest)
        except HelixError as exc:
            raise UsageError(str(exc)) from None
        print(f"model: {choice.label}")

    async def _cmd_serve(self, args: Any) -> None:
        from .serve_process import start_background_server

        try:
            server = await start_background_server(port=args.port, storage=args.storage,
                                                   agents=args.agents)
        except HelixError as exc:
            raise UsageError(str(exc)) from None
        self.workbench.serve_process = server
        print(f"helix serve is running at {server.url} (token in $HELIX_TOKEN). "
              f"Next: %helix use {server.url} --token-env HELIX_TOKEN")

    async def _cmd_deploy(self, args: Any) -> None:
        from .deploy import DeployError, deploy

        try:
            result = await asyncio.to_thread(deploy, dry_run=args.dry_run, name=args.name,
                                             agents=args.agents)
        except DeployError as exc:
            raise UsageError(str(exc)) from None
        print(result)


def load_ipython_extension(ipython: Any) -> None:
    magics = HelixMagics(ipython)
    ipython.register_magics(magics)
    if transform_cell not in ipython.input_transformers_cleanup:
        ipython.input_transformers_cleanup.append(transform_cell)
    wb = magics.workbench
    print(f"helix_lab {__import__('helix_lab').__version__} · model: {wb.llm.label} · "
          f"backend: {wb.describe_backend()} · agents: {', '.join(wb.agent_types())}")
    from .otel import env_configured

    if env_configured() and wb.otel is None:
        try:
            print(f"otel: on (OTEL_EXPORTER_OTLP_* is set), {wb.start_otel()}")
        except HelixError as exc:
            print(f"otel: off — {exc}")


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext helix_lab``: stop the views and runs, close the databases and clients.

    On the kernel's running loop the closing is a task (the hook itself is synchronous);
    it is kept as ``magics.closing`` so that nothing is left pending unseen.
    """
    if transform_cell in ipython.input_transformers_cleanup:
        ipython.input_transformers_cleanup.remove(transform_cell)
    magics = ipython.magics_manager.registry.get("HelixMagics")
    if magics is not None:
        magics.closing = magics._close_soon()


_closing: set[asyncio.Future[None]] = set()
"""Closings in progress, strongly referenced until they finish."""


"""Record the cassettes that the tutorial notebooks replay, then refresh the notebooks.

::

    .venv/bin/python notebooks/record_cassettes.py                  # every notebook
    .venv/bin/python notebooks/record_cassettes.py time_travel      # one
    .venv/bin/python notebooks/record_cassettes.py --no-execute     # cassettes only

Each notebook marks the cells that choose its model with the tag ``cassette``:
``%helix llm replay cassettes/NAME.jsonl`` or ``ReplayLLM("cassettes/NAME.jsonl")``. This
script runs the notebook itself, top to bottom, in a fresh kernel, with those cells
switched from replaying to recording (``%helix llm record`` / ``RecordingLLM``), so a
cassette holds exactly the model calls its notebook makes, in the order it makes them.

``deploy.ipynb`` is the exception: its researcher runs in a ``helix serve`` process whose
agents module (``deploy_agents.py``) replays the cassette. For it, the script runs the
notebook's ``%%helix_agent`` cells itself, in-process, on that module's agents, recording.

The model it records is

- Claude, when ``ANTHROPIC_API_KEY`` is set in the environment;
- otherwise a local fake of the Anthropic Messages API (``tests/fakes``): a real HTTP
  server streaming the API's server-sent events, reached through the real
  ``AnthropicAdapter``. Its replies come from the deterministic planners below, which read
  each request the way a model would (the question, the tools, the tool results so far).

Then each notebook is executed again, on the new cassettes and with no key in its
kernel's environment, and saved with its outputs: the outputs that ``pytest --nbval``
compares. Finally every cassette is checked for credentials.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import nbformat  # noqa: E402
from fakes.anthropic_server import FakeAnthropic, Reply, Text, Thinking, ToolUse, turn  # noqa: E402
from nbclient import NotebookClient  # noqa: E402

from helix_lab.agent import FINISH_TOOL  # noqa: E402
from helix_lab.llm import LLMRequest, OfflineLLM, Turn  # noqa: E402

NOTEBOOKS = ("quickstart", "time_travel", "custom_agents", "deploy")
SERVED = {"deploy": "deploy_agents"}
"""Notebooks whose model runs in a ``helix serve`` process, in the ``llm_adapter`` of the
agents module named here, out of the notebook kernel's reach."""
TAG = "cassette"
FAKE_KEY = "sk-ant-fake-recording-key"
"""The key the fake server is called with; the check at the end proves it is in no cassette."""
CELL_TIMEOUT = 120


# -- planners: what the fake model answers ------------------------------------------------

def _question(messages: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """The last plain user message, and the tool calls and results since, in order."""
    question, events = "", []
    for message in messages:
        content = message.get("content")
        if message.get("role") == "user" and isinstance(content, str):
            question, events = content, []
        elif isinstance(content, list):
            for block in content:
                if block.get("type") in ("tool_use", "tool_result"):
                    events.append(block)
    return question, events


def _results(events: list[dict[str, Any]], name: str) -> list[tuple[dict[str, Any], Any, bool]]:
    """``(tool input, result, is_error)`` of each call of tool ``name``."""
    calls = {b["id"]: b for b in events if b["type"] == "tool_use"}
    out = []
    for block in events:
        if block["type"] == "tool_result" and calls.get(block["tool_use_id"], {}).get(
                "name") == name:
            try:
                result = json.loads(block["content"])
            except ValueError:
                result = block["content"]
            out.append((calls[block["tool_use_id"]]["input"], result, block["is_error"]))
    return out


_STOPWORDS = frozenset({"a", "an", "and", "are", "about", "do", "does", "how", "i", "in", "is",
                        "of", "on", "the", "to", "was", "what", "when", "where", "which", "who",
                        "why", "with"})


def plan_researcher(request: LLMRequest) -> Turn:
    """The bundled researcher: search, read the best note, save it as a finding, answer."""
    question, events = _question(request.messages)
    if not _results(events, "search_notes"):
        query = " ".join(w for w in re.findall(r"[a-z0-9]+", question.lower())
                         if w not in _STOPWORDS)
        return Turn(thinking=f"I'll search the notes for '{query}'.",
                    tool_calls=[{"name": "search_notes", "input": {"query": query}}])
    hits = _results(events, "search_notes")[-1][1]
    if not hits:
        return Turn(text="The notes have nothing on that.")
    read = _results(events, "read_note")
    if not read:
        return Turn(thinking=f"'{hits[0]['title']}' ({hits[0]['id']}) looks like the answer; "
                             "I'll read it.",
                    tool_calls=[{"name": "read_note", "input": {"note_id": hits[0]["id"]}}])
    note = read[-1][1]
    if not _results(events, "save_finding"):
        return Turn(thinking="This note answers the question. I'll save it as a finding.",
                    tool_calls=[{"name": "save_finding", "input": {
                        "finding": f"{note['text']} [{note['id']}]"}}])
    return Turn(thinking="I have the finding I need.",
                text=f"{note['title']}. {note['text']} [{note['id']}]")


def plan_surveyor(request: LLMRequest) -> Turn:
    """time_travel.ipynb: survey the named sites one per step, then compare the counts."""
    question, events = _question(request.messages)
    sites = sorted((question.lower().find(s), s) for s in ("kelp forest", "tide pools", "estuary")
                   if s in question.lower())
    done = _results(events, "survey_site")
    tried = [inp["site"] for inp, _, _ in done]
    failed = [(inp["site"], res) for inp, res, err in done if err]
    todo = [s for _, s in sites if s not in tried]
    if todo and not failed:
        return Turn(thinking=f"Next I survey the {todo[0]}.",
                    tool_calls=[{"name": "survey_site", "input": {"site": todo[0]}}])
    counts = {res["site"]: res["counts"].get("sea otter", 0) for _, res, err in done if not err}
    best = max(counts, key=counts.get)
    listing = ", ".join(f"{site} {n}" for site, n in counts.items())
    text = f"Sea otters counted: {listing}. The {best} has the most ({counts[best]})."
    if failed:
        missed = ", ".join(site for site, _ in failed)
        text += (f" I could not survey the {missed}: the budget ran out, so this ranking "
                 "leaves it out.")
    return Turn(thinking="All the sites I could visit are counted; time to compare.", text=text)


def plan_fact_checker(request: LLMRequest) -> Turn:
    """custom_agents.ipynb: look the species up, then report it in three short lines."""
    question, events = _question(request.messages)
    species = next((s for s in ("giant pacific octopus", "atlantic puffin", "sea otter")
                    if s in question.lower()), question.lower())
    found = [(inp, res) for inp, res, err in _results(events, "lookup")
             if not err and inp["species"] == species]
    if not found:
        return Turn(thinking=f"I should look up the {species} first.",
                    tool_calls=[{"name": "lookup", "input": {"species": species}}])
    entry = found[-1][1]
    return Turn(text=f"Habitat: {entry['habitat']}.\nDiet: {', '.join(entry['diet'])}.\n"
                     f"Fun fact: {entry['fact']}.")


def plan_card_writer(request: LLMRequest) -> Turn:
    """custom_agents.ipynb: delegate to fact_checker, note the fun fact, finish the card."""
    question, events = _question(request.messages)
    species = next((s for s in ("giant pacific octopus", "atlantic puffin", "sea otter")
                    if s in question.lower()), "sea otter")
    report = _results(events, "subagent__fact_checker")
    if not report:
        return Turn(thinking="The fact checker should find the facts first.",
                    tool_calls=[{"name": "subagent__fact_checker", "input": {
                        "message": f"Look up the {species}: habitat, diet and one fun fact."}}])
    fields = dict(re.findall(r"^(Habitat|Diet|Fun fact): (.*?)\.?$", report[-1][1], re.M))
    if not _results(events, "note_fact"):
        return Turn(thinking="The fun fact is worth keeping.", tool_calls=[{
            "name": "note_fact", "input": {"species": species, "fact": fields["Fun fact"]}}])
    return Turn(thinking="I have all I need for the card.", tool_calls=[{
        "name": FINISH_TOOL, "input": {
            "species": species, "habitat": fields["Habitat"],
            "diet": fields["Diet"].split(", "), "fun_fact": fields["Fun fact"] + "."}}])


PLANNERS = {
    frozenset({"search_notes", "save_finding", "read_note"}): plan_researcher,
    frozenset({"survey_site"}): plan_surveyor,
    frozenset({"lookup"}): plan_fact_checker,
    frozenset({"note_fact", "subagent__fact_checker", FINISH_TOOL}): plan_card_writer,
}
"""Agents by their tool sets; any other agent gets ``OfflineLLM``'s plan."""


def plan(body: dict[str, Any]) -> Turn:
    choice = body.get("tool_choice") or {}
    request = LLMRequest(
        model=body["model"], messages=body["messages"], system=body.get("system", ""),
        tools=body.get("tools", []), max_tokens=body["max_tokens"],
        tool_choice=choice.get("name") if choice.get("type") == "tool" else None)
    planner = PLANNERS.get(frozenset(t["name"] for t in request.tools))
    return planner(request) if planner else OfflineLLM().plan(request)


def _tokens(value: Any) -> int:
    return max(1, len(json.dumps(value)) // 4)


def reply(body: dict[str, Any], number: int) -> Reply:
    """The Messages API stream of the planned turn, with plausible token counts."""
    planned = plan(body)
    blocks: list[Any] = []
    if planned.thinking:
        blocks.append(Thinking(planned.thinking, pieces=max(1, len(planned.thinking) // 16)))
    if planned.text:
        blocks.append(Text(planned.text, pieces=max(1, len(planned.text) // 16)))
    blocks += [ToolUse(c["name"], c["input"], id=f"toolu_{number:03d}{i}")
               for i, c in enumerate(planned.tool_calls)]
    return turn(*blocks, message_id=f"msg_{number:04d}",
                input_tokens=_tokens([body.get("system"), body["messages"], body.get("tools")]),
                output_tokens=_tokens([planned.thinking, planned.text, planned.tool_calls]))


class _Planned(deque):  # type: ignore[type-arg]
    """The fake's reply queue, never empty: each reply is planned from its request.

    ``FakeAnthropic`` takes the next reply from its queue right after it has stored the
    request, so the plan can read the request it answers."""

    def __init__(self, fake: FakeAnthropic) -> None:
        super().__init__()
        self.fake = fake

    def __bool__(self) -> bool:
        return True

    def popleft(self) -> Reply:
        return reply(self.fake.requests[-1].json(), len(self.fake.requests))


def planned_fake() -> FakeAnthropic:
    fake = FakeAnthropic()
    fake._replies = _Planned(fake)
    return fake


# -- running the notebooks -----------------------------------------------------------------

def recording_source(source: str, base_url: str | None) -> str:
    """A ``cassette`` cell switched from replaying to recording."""
    llm = f"%helix llm anthropic {base_url}" if base_url else "%helix llm anthropic"
    source, magics = re.subn(r"^%helix llm (?:replay|auto) (\S+)$",
                             lambda m: f"{llm}\n%helix llm record {m.group(1)}", source,
                             flags=re.M)
    adapter = f"AnthropicAdapter(base_url={base_url!r})" if base_url else "AnthropicAdapter()"
    source, calls = re.subn(r"\bReplayLLM\(([^()]*)\)",
                            lambda m: f"RecordingLLM({adapter}, {m.group(1)})", source)
    if calls:
        source = "from helix_lab.llm import AnthropicAdapter, RecordingLLM\n" + source
    if not magics + calls:
        raise SystemExit(f"A cell tagged {TAG!r} has no replay to switch:\n{source}")
    return source


def cassettes_of(nb: Any) -> list[Path]:
    found = []
    for cell in nb.cells:
        if TAG in cell.metadata.get("tags", []):
            found += [HERE / p for p in re.findall(r"(cassettes/[\w.-]+\.jsonl)", cell.source)]
    return found


def execute(nb: Any, env: dict[str, str]) -> None:
    client = NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3",
                            resources={"metadata": {"path": str(HERE)}})
    client.execute(env=env)


def kernel_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL")}
    return {**env, **extra}


def record(name: str, real_key: str | None) -> list[Path]:
    if name in SERVED:
        return record_served(name, SERVED[name], real_key)
    path = HERE / f"{name}.ipynb"
    nb = nbformat.read(path, as_version=4)
    cassettes = cassettes_of(nb)
    if not cassettes:
        print(f"{name}: no cell tagged {TAG!r}, nothing to record")
        return []
    fake = None if real_key else planned_fake().start()
    try:
        base_url = fake.base_url if fake else None
        for cell in nb.cells:
            if TAG in cell.metadata.get("tags", []):
                cell.source = recording_source(cell.source, base_url)
        started = time.monotonic()
        execute(nb, {**os.environ, "ANTHROPIC_API_KEY": real_key} if real_key
                else kernel_env(ANTHROPIC_API_KEY=FAKE_KEY))
        calls = sum(len(p.read_text().splitlines()) for p in cassettes)
        model = "Claude" if real_key else f"the fake API ({len(fake.requests)} requests)"
        print(f"{name}: recorded {calls} calls from {model} into "
              f"{', '.join(p.name for p in cassettes)} in {time.monotonic() - started:.1f} s")
    finally:
        if fake:
            fake.close()
    return cassettes


def record_served(name: str, module_name: str, real_key: str | None) -> list[Path]:
    """Run the notebook's ``%%helix_agent`` cells here, in order, on the module's agents."""
    import asyncio
    import importlib

    from helix_lab import LocalBackend, LocalNamespace, create_agent_server
    from helix_lab.llm import AnthropicAdapter, RecordingLLM

    sys.path.insert(0, str(HERE))
    module = importlib.import_module(module_name)
    cassette = HERE / module.CASSETTE
    nb = nbformat.read(HERE / f"{name}.ipynb", as_version=4)
    runs = [cell.source.partition("\n") for cell in nb.cells
            if cell.cell_type == "code" and cell.source.startswith("%%helix_agent ")]

    async def run(adapter: Any) -> int:
        recorder = RecordingLLM(adapter, cassette)
        server = create_agent_server(llm_adapter=lambda env, ctx: recorder,
                                     agents=module.registry)
        async with LocalBackend(LocalNamespace(server, storage=":memory:")) as backend:
            for first, _, body in runs:
                words = first.split()
                session = words[words.index("--session") + 1] if "--session" in words else None
                handle = await backend.start(words[1], body.strip(), session_id=session)
                await handle.result()
        return recorder.calls

    fake = None if real_key else planned_fake().start()
    try:
        adapter = AnthropicAdapter(api_key=real_key or FAKE_KEY,
                                   base_url=fake.base_url if fake else None)
        calls = asyncio.run(run(adapter))
    finally:
        if fake:
            fake.close()
    print(f"{name}: recorded {calls} calls of its {len(runs)} %%helix_agent cell(s), run "
          f"here on {module_name}'s agents, into {cassette.name}")
    return [cassette]


def refresh(name: str) -> None:
    """Execute the notebook on its cassettes, with no key, and save it with its outputs."""
    path = HERE / f"{name}.ipynb"
    nb = nbformat.read(path, as_version=4)
    started = time.monotonic()
    execute(nb, kernel_env())
    nbformat.write(nb, path)
    print(f"{name}: executed and saved in {time.monotonic() - started:.1f} s")


def check_secrets(paths: list[Path], real_key: str | None) -> None:
    secrets = [s for s in (FAKE_KEY, real_key) if s]
    for path in paths:
        text = path.read_text()
        if any(s in text for s in secrets) or re.search(r"sk-ant-[\w-]{8,}", text):
            raise SystemExit(f"{path} contains a credential; delete it and record again.")
    print(f"checked {len(paths)} cassettes: no credentials")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"notebooks to record: {', '.join(NOTEBOOKS)} (default: all)")
    parser.add_argument("--no-execute", action="store_true",
                        help="record the cassettes but leave the notebooks' outputs alone")
    args = parser.parse_args()
    unknown = sorted(set(args.names) - set(NOTEBOOKS))
    if unknown:
        parser.error(f"no notebook {', '.join(unknown)}; choose from {', '.join(NOTEBOOKS)}")
    names = args.names or [n for n in NOTEBOOKS if (HERE / f"{n}.ipynb").exists()]
    real_key = os.environ.get("ANTHROPIC_API_KEY") or None
    recorded = []
    for name in names:
        recorded += record(name, real_key)
    check_secrets(recorded, real_key)
    if not args.no_execute:
        for name in names:
            refresh(name)


if __name__ == "__main__":
    main()

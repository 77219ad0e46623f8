"""The bundle check that ``helix deploy`` runs before any toolchain: does the Worker import?

:func:`helix_lab.deploy.check_bundle` runs this file as a script in a fresh, isolated
interpreter (``python -I -B deploy_check.py ARGS``) with the project's ``src/`` as the
working directory. ``ARGS`` is JSON: ``{"src", "standin", "agents", "approach"}``. It

1. installs the CPython stand-in for Cloudflare's ``workers`` module (loaded from its
   folder under a private name, so the installed helix_lab is not imported for it);
2. imports the bundle's ``entry.py``, and checks that ``helix_lab`` came from the bundle;
3. asks the Worker for ``/health``, ``/agents`` and a session's ``/status``, as a client
   would;
4. lists the third-party packages the import pulled in from outside the bundle, which the
   Worker will not have unless pywrangler vendors them.

It prints one line of JSON: ``{"agents", "outside", "problems"}``. So that step 2 means
something, this module imports nothing from helix_lab itself, and it is never copied
into the bundle.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import sys
import sysconfig
import tempfile
from collections.abc import Iterable, Mapping
from types import ModuleType
from typing import Any

STANDIN_NAME = "_helix_standin"
PROVIDED_BY_HOST = frozenset({STANDIN_NAME, "workers", "js"})
"""Top-level modules the Workers runtime provides (here: the stand-in)."""


def load_standin(location: str) -> ModuleType:
    """Import the stand-in package from its folder, under :data:`STANDIN_NAME`."""
    spec = importlib.util.spec_from_file_location(
        STANDIN_NAME, os.path.join(location, "__init__.py"),
        submodule_search_locations=[location])
    if spec is None or spec.loader is None:
        raise ImportError(f"no workers stand-in at {location}")
    standin = importlib.util.module_from_spec(spec)
    sys.modules[STANDIN_NAME] = standin
    spec.loader.exec_module(standin)
    return standin


def bundled(module: ModuleType, src: str) -> bool:
    """Whether ``module`` was loaded from under the bundle's ``src`` folder."""
    file = getattr(module, "__file__", None)
    return bool(file) and os.path.realpath(file).startswith(src + os.sep)


def _workflows_env(entry: ModuleType, standin: ModuleType, agents: str,
                   tmp: str) -> tuple[Any, Any, list[Any]]:
    """The Workflows bundle's bindings on the stand-in: the engine and D1 are the bundle's
    own emulations (``helix_lab.workflows``, imported from the bundle by ``entry``)."""
    bundled_workflows = importlib.import_module("helix_lab.workflows")
    namespace = standin.DurableObjectNamespace(entry.StreamServerObject, storage=tmp,
                                               name="STREAMS")
    db = bundled_workflows.LocalD1(os.path.join(tmp, "d1.sqlite3"))
    env = standin.Env(STREAMS=namespace, AGENT_DB=db, HELIX_TOKEN="check",
                      HELIX_AGENTS_MODULE=agents)
    engine = bundled_workflows.LocalWorkflowBinding(entry.AgentWorkflow,
                                                    os.path.join(tmp, "wf.sqlite3"), env=env)
    env.AGENT_WORKFLOW = importlib.import_module(
        STANDIN_NAME + ".workflows").WorkflowBinding(engine)
    return namespace, env, [engine.aclose, db.close]


async def smoke(entry: ModuleType, standin: ModuleType, agents: str,
                approach: str = "durable-objects") -> tuple[list[str], list[str]]:
    """Call the Worker as a client would; the agent types it serves, and any problems."""
    problems: list[str] = []
    listing: dict[str, Any] = {}
    closers: list[Any] = []
    with tempfile.TemporaryDirectory() as tmp:
        if approach == "workflows":
            namespace, env, closers = _workflows_env(entry, standin, agents, tmp)
        else:
            namespace = standin.DurableObjectNamespace(entry.HelixAgentServer, storage=tmp)
            env = standin.Env(AGENTS=namespace, HELIX_TOKEN="check",
                              HELIX_AGENTS_MODULE=agents)
        auth = {"authorization": "Bearer check"}

        async def get(path: str) -> tuple[int, Any]:
            request = standin.Request("http://bundle.check" + path, headers=auth)
            response = await standin.call_entrypoint(entry.Default, request, env)
            return response.status, json.loads(await response.text())

        try:
            status, body = await get("/health")
            if status != 200:
                problems.append(f"/health answered {status}: {body}")
            status, listing = await get("/agents")
            if status != 200:
                problems.append(listing.get("error", {}).get("message")
                                or f"/agents answered {status}")
            status, snapshot = await get("/sessions/bundle-check/status")
            if status != 200:
                problems.append(f"a session object answered {status}: {snapshot}")
        finally:
            await namespace.close()
            for close in closers:
                done = close()
                if asyncio.iscoroutine(done):
                    await done
    return list(listing.get("agents", [])), problems


def _stdlib_dirs() -> list[str]:
    paths = sysconfig.get_paths()
    return [os.path.realpath(paths[key]) + os.sep for key in ("stdlib", "platstdlib")]


def imported_from_outside(modules: Mapping[str, ModuleType], before: Iterable[str],
                          src: str) -> list[str]:
    """Top-level names of modules imported since ``before`` that are neither the
    standard library, nor the host's, nor files under ``src``."""
    stdlib = set(sys.stdlib_module_names)
    stdlib_dirs = _stdlib_dirs()
    outside: set[str] = set()
    for name in set(modules) - set(before):
        top = name.split(".")[0]
        file = getattr(modules[name], "__file__", None)
        if not file or top in stdlib or top in PROVIDED_BY_HOST:
            continue  # no file: built into the interpreter
        path = os.path.realpath(file)
        if any(path.startswith(d) and "site-packages" not in path for d in stdlib_dirs):
            continue
        if not path.startswith(src + os.sep):
            outside.add(top)
    return sorted(outside)


def check(src: str, standin_dir: str, agents: str,
          approach: str = "durable-objects") -> dict[str, Any]:
    """Steps 1 to 4 of the module docstring; the report."""
    before = set(sys.modules)
    src = os.path.realpath(src)
    sys.path.insert(0, src)
    standin = load_standin(standin_dir)
    standin.install()
    problems: list[str] = []
    import entry  # the bundle's main module, found on sys.path[0]

    helix_lab = sys.modules["helix_lab"]
    if not bundled(helix_lab, src):
        problems.append(f"helix_lab was imported from {helix_lab.__file__}, not the bundle")
    types, smoke_problems = asyncio.run(smoke(entry, standin, agents, approach))
    return {"agents": types, "outside": imported_from_outside(sys.modules, before, src),
            "problems": problems + smoke_problems}


def main(argv: list[str] | None = None) -> int:
    args = json.loads((sys.argv[1:] if argv is None else argv)[0])
    print(json.dumps(check(args["src"], args["standin"], args["agents"],
                           args.get("approach", "durable-objects"))))
    return 0


if __name__ == "__main__":
    sys.exit(main())

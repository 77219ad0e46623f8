"""``helix deploy``: write a Cloudflare Worker project for your agents, then run wrangler.

::

    $ helix deploy --dry-run --agents my_agents        # build and validate, offline
    wrote helix-worker/ (Worker 'helix-lab', agents from my_agents: researcher)
    import check passed; wrangler deploy --dry-run passed (helix-worker/dist)

    $ export CLOUDFLARE_API_TOKEN=...                  # "Edit Cloudflare Workers" template
    $ helix deploy --agents my_agents                  # pywrangler vendors pydantic, uploads
    $ cd helix-worker && printf %s "$HELIX_TOKEN" | npx wrangler secret put HELIX_TOKEN

The project (default ``./helix-worker``) holds ``wrangler.toml`` (the ``AGENTS`` Durable
Object binding, its ``new_sqlite_classes`` migration, the ``python_workers`` flag),
``src/entry.py``, ``src/helix_lab/`` (the runtime, copied), your agents module (copied),
``python_modules/`` (the ``workers`` SDK, vendored from this environment) and a
``pyproject.toml`` naming the packages pywrangler must vendor (pydantic, anyio).

Before wrangler runs, the bundle is imported against the CPython stand-in of the
``workers`` runtime and answers ``/health`` and ``/agents`` (``helix_lab/deploy_check.py``,
run in a fresh interpreter), so a broken agents module fails here and not at upload. The
project's own files are templates shipped in ``helix_lab/deploy_templates/``. Secrets are never written into the project: set them with
``wrangler secret put``. Every failure is a :class:`DeployError` whose one-line message
names the fix.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import importlib.resources
import importlib.util
import json
import os
import re
import shlex
import shutil
import string
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import DeployError

__all__ = [
    "APPROACHES",
    "COMPATIBILITY_DATE",
    "D1_PLACEHOLDER_ID",
    "DEFAULT_DIR",
    "DEFAULT_NAME",
    "DeployError",
    "DeployResult",
    "build_project",
    "check_bundle",
    "deploy",
    "describe",
    "find_wrangler",
]

COMPATIBILITY_DATE = "2026-06-01"
"""Python 3.13 / Pyodide 0.28, no global handlers, .pth processing; needs the vendored SDK."""
WRANGLER_VERSION = "4.86.0"
"""The newest wrangler that runs on Node 20; ``npx`` falls back to ``wrangler@4``."""
DEFAULT_DIR = "helix-worker"
DEFAULT_NAME = "helix-lab"
DEFAULT_AGENTS = "helix_lab.examples"
SDK_DISTRIBUTION = "workers-runtime-sdk"
MARKER = ".helix-worker"
"""Marks a directory ``helix deploy`` wrote, so it may be rewritten."""

_PACKAGE = Path(__file__).resolve().parent
_NOT_BUNDLED = ("client", "widgets", "worker_bundle/standin", "pyodide_host", "magics.py",
                "workbench.py", "cli.py", "serve.py", "serve_process.py", "deploy.py",
                "deploy_check.py")
"""Parts of helix_lab the Worker never imports (notebook, client and tooling side).

Everything else under helix_lab/ is copied, so a new core module needs no change here;
the import check proves the bundle is complete. ``examples`` ships too, with its corpus,
so that an agents module may build on the bundled agents."""
_WORKER_PACKAGES = ("pydantic", "pydantic_core", "typing_extensions", "annotated_types",
                    "typing_inspection", "anyio", "idna")
"""Third-party packages the bundle itself needs; pywrangler vendors them."""
_SKIP_DIRS = {"__pycache__", ".git", ".venv", "node_modules", ".ipynb_checkpoints",
              ".pytest_cache", ".mypy_cache", ".ruff_cache"}
_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_MAX_AGENT_BYTES = 20 * 1024 * 1024


@dataclass
class DeployResult:
    """What :func:`deploy` did."""

    project_dir: Path
    name: str
    agents_module: str
    agent_types: list[str] = field(default_factory=list)
    dry_run: bool = True
    toolchain: list[str] | None = None
    """The command that was run (``None`` when the toolchain was skipped)."""
    outdir: Path | None = None
    """``--dry-run``: where wrangler wrote the bundle it would upload."""
    warnings: list[str] = field(default_factory=list)
    next_steps: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        agents = ", ".join(self.agent_types) or "none"
        lines = [f"Worker {self.name!r} written to {self.project_dir} "
                 f"(agents from {self.agents_module}: {agents})."]
        if self.toolchain is None:
            lines.append("Import check passed; the toolchain was not run.")
        elif self.dry_run:
            lines.append(f"wrangler deploy --dry-run passed; the bundle is in {self.outdir}.")
        else:
            lines.append("Deployed.")
        lines += [f"warning: {w}" for w in self.warnings]
        if self.next_steps:
            lines.append("Next, set the secrets (never put them in wrangler.toml):")
            lines += [f"  {step}" for step in self.next_steps]
        return "\n".join(lines)


# -- the project ---------------------------------------------------------------------------------


def _check_name(name: str) -> str:
    if not _NAME.match(name):
        raise DeployError(f"Worker name {name!r} is not valid: use lowercase letters, digits "
                          "and '-' (at most 63, not starting or ending with '-'), e.g. "
                          f"--name {DEFAULT_NAME}.")
    return name


def _import_agents(module: str) -> None:
    """Import the agents module here first, for a clear error if it is broken."""
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name and (module == exc.name or module.startswith(exc.name + ".")):
            raise DeployError(f"Cannot find the agents module {module!r}; run helix deploy "
                              "from the directory that contains it, or pass --agents "
                              "MODULE.") from None
        raise DeployError(f"The agents module {module!r} does not import ({exc}); install "
                          "what it needs, or pass --agents MODULE.") from None
    except Exception as exc:
        raise DeployError(f"The agents module {module!r} does not import ({type(exc).__name__}: "
                          f"{exc}); fix it, or pass --agents MODULE.") from None


def _agent_sources(module: str) -> list[tuple[Path, str]]:
    """``(file, path in src/)`` for the agents module: its file, or its top package."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError) as exc:
        raise DeployError(f"Cannot find the agents module {module!r} ({exc}); run helix "
                          "deploy from the directory that contains it.") from None
    if spec is None or (spec.origin is None and not spec.submodule_search_locations):
        raise DeployError(f"Cannot find the agents module {module!r}; run helix deploy from "
                          "the directory that contains it, or pass --agents MODULE.")
    parts = module.split(".")
    if parts[0] == "helix_lab":
        # Inside helix_lab: the package is bundled already; add this module's file or dir.
        if spec.submodule_search_locations:
            root = Path(next(iter(spec.submodule_search_locations)))
            return _tree(root, "helix_lab/" + "/".join(parts[1:]))
        return [(Path(str(spec.origin)), "helix_lab/" + "/".join(parts[1:]) + ".py")]
    top = importlib.util.find_spec(parts[0])
    assert top is not None
    if top.submodule_search_locations:
        return _tree(Path(next(iter(top.submodule_search_locations))), parts[0])
    return [(Path(str(top.origin)), parts[0] + ".py")]


def _runtime_files() -> list[Path]:
    """The helix_lab modules the Worker needs: all ``.py`` files but :data:`_NOT_BUNDLED`."""
    files = []
    for path in sorted(_PACKAGE.rglob("*.py")):
        relative = path.relative_to(_PACKAGE).as_posix()
        if "__pycache__" in relative or any(
                relative == skip or relative.startswith(skip + "/") for skip in _NOT_BUNDLED):
            continue
        files.append(path)
    if not any(p.relative_to(_PACKAGE).as_posix() == "worker_bundle/entry.py" for p in files):
        raise DeployError("helix_lab/worker_bundle/entry.py is missing from this "
                          "installation; reinstall helix_lab.")
    return files


def _tree(root: Path, dest: str) -> list[tuple[Path, str]]:
    files: list[tuple[Path, str]] = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if any(part in _SKIP_DIRS or part.startswith(".") for part in relative.parts):
            continue
        if path.is_file() and path.suffix not in (".pyc", ".pyo", ".so", ".pyd"):
            files.append((path, f"{dest}/{relative.as_posix()}"))
    return files


def _sdk_files() -> list[tuple[Path, str]]:
    """The installed ``workers-runtime-sdk``, to vendor into ``python_modules/``."""
    try:
        dist = importlib.metadata.distribution(SDK_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise DeployError(f"{SDK_DISTRIBUTION} is not installed, and a Worker dated "
                          f"{COMPATIBILITY_DATE} needs it vendored: pip install "
                          "'helix_lab[deploy]'.") from None
    files = []
    for entry in dist.files or []:
        parts = entry.parts
        if "__pycache__" in parts or entry.suffix in (".pyc", ".pyi") or parts[-1] in (
                "RECORD", "INSTALLER", "REQUESTED", "direct_url.json"):
            continue
        source = Path(str(dist.locate_file(entry)))
        if source.is_file():
            files.append((source, entry.as_posix()))
    if not any(dest == "workers/__init__.py" for _, dest in files):
        raise DeployError(f"The installed {SDK_DISTRIBUTION} has no workers/ package; "
                          f"reinstall it: pip install --force-reinstall {SDK_DISTRIBUTION}.")
    return files


APPROACHES = ("durable-objects", "workflows")
D1_PLACEHOLDER_ID = "00000000-0000-0000-0000-000000000000"
"""Written until you put the id ``wrangler d1 create`` prints (a dry run needs none)."""

_TEMPLATES = importlib.resources.files("helix_lab") / "deploy_templates"
"""The project's files, as ``string.Template`` text shipped with the package."""


def _render(template: str, **values: str) -> str:
    return string.Template((_TEMPLATES / template).read_text(encoding="utf-8")).substitute(values)


def _project_files(name: str, agents: str, extra: list[str],
                   approach: str = "durable-objects") -> dict[str, str]:
    """What ``build_project`` writes besides the sources: path -> text."""
    dependencies = ", ".join(['"pydantic>=2.7,<3"', '"anyio>=4"',
                              *(json.dumps(e) for e in extra)])
    if approach == "workflows":
        from .workflows.state import SCHEMA

        specific = {
            "src/entry.py": _render("entry_workflows.py.tmpl"),
            "wrangler.toml": _render("wrangler_workflows.toml.tmpl", name=name, agents=agents,
                                     compatibility_date=COMPATIBILITY_DATE,
                                     database_id=D1_PLACEHOLDER_ID),
            "migrations/0001_helix_workflows.sql": SCHEMA,
        }
    else:
        specific = {
            "src/entry.py": _render("entry.py.tmpl"),
            "wrangler.toml": _render("wrangler.toml.tmpl", name=name, agents=agents,
                                     compatibility_date=COMPATIBILITY_DATE),
        }
    return {
        **specific,
        "pyproject.toml": _render("pyproject.toml.tmpl", name=name, dependencies=dependencies,
                                  sdk=SDK_DISTRIBUTION),
        "README.md": _render("README.md.tmpl", name=name, agents=agents),
        ".gitignore": _render("gitignore.tmpl"),
    }


def build_project(out_dir: str | os.PathLike[str] = DEFAULT_DIR, *, name: str = DEFAULT_NAME,
                  agents: str = DEFAULT_AGENTS, extra_dependencies: list[str] | None = None,
                  approach: str = "durable-objects") -> Path:
    """Write the Worker project into ``out_dir`` (made by an earlier run, or new)."""
    _check_name(name)
    project = Path(out_dir).resolve()
    if project.exists() and any(project.iterdir()) and not (project / MARKER).exists():
        raise DeployError(f"{project} exists and was not written by helix deploy; pass "
                          "--dir with a new or empty directory.")
    agent_files = _agent_sources(agents)
    if not agents.startswith(DEFAULT_AGENTS):
        agent_files += _agent_sources(DEFAULT_AGENTS)  # its data files (the corpus)
    size = sum(path.stat().st_size for path, _ in agent_files)
    if size > _MAX_AGENT_BYTES:
        raise DeployError(f"The agents package {agents.split('.')[0]!r} holds {size >> 20} MB;"
                          " move the agents into a small module and pass --agents.")
    sdk = _sdk_files()
    for generated in ("src", "python_modules", "dist", "migrations"):
        shutil.rmtree(project / generated, ignore_errors=True)
    project.mkdir(parents=True, exist_ok=True)
    (project / MARKER).write_text("This directory is written by `helix deploy`.\n")

    def put(source: Path, dest: Path) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, dest)

    src = project / "src"
    for path in _runtime_files():
        put(path, src / "helix_lab" / path.relative_to(_PACKAGE))
    for path, dest in agent_files:
        put(path, src / dest)
    for path, dest in sdk:
        put(path, project / "python_modules" / dest)
    for dest, text in _project_files(name, agents, extra_dependencies or [],
                                     approach).items():
        (project / dest).parent.mkdir(parents=True, exist_ok=True)
        (project / dest).write_text(text)
    return project


# -- the import check -----------------------------------------------------------------------------

def check_bundle(project: str | os.PathLike[str], agents: str,
                 approach: str = "durable-objects") -> tuple[list[str], list[str]]:
    """Import ``src/entry.py`` against the stand-in in a fresh interpreter and smoke-test it.

    Returns the agent types it serves and the third-party packages it pulled in from
    outside the bundle (which the Worker will not have unless pywrangler vendors them).
    """
    src = Path(project).resolve() / "src"
    standin = _PACKAGE / "worker_bundle" / "standin"
    args = json.dumps({"src": str(src), "standin": str(standin), "agents": agents,
                       "approach": approach})
    try:
        # -I: neither the environment nor the script's folder reaches sys.path, so the
        # bundle's helix_lab is the one imported.
        done = subprocess.run([sys.executable, "-I", "-B", str(_PACKAGE / "deploy_check.py"),
                               args], cwd=src,
                              capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        raise DeployError("The bundle's import check did not finish in 120 s; does the agents "
                          "module do work at import time?") from None
    lines = done.stdout.strip().splitlines()
    try:
        report = json.loads(lines[-1]) if done.returncode == 0 and lines else None
    except ValueError:
        report = None
    if report is None:
        reason = _last_error(done.stderr) or f"exit status {done.returncode}"
        raise DeployError(f"The bundle does not import against the Workers stand-in ({reason});"
                          " fix the agents module, or run `python -c 'import "
                          f"{agents}'` to see why.")
    if report["problems"]:
        raise DeployError(f"The bundle's smoke test failed: {report['problems'][0]}")
    outside = [p for p in report["outside"] if p not in _WORKER_PACKAGES]
    return report["agents"], outside


def _last_error(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


# -- the toolchain --------------------------------------------------------------------------------


def find_wrangler(cwd: str | os.PathLike[str] | None = None) -> list[str] | None:
    """The wrangler command: ``$HELIX_WRANGLER``, ``node_modules/.bin/wrangler`` in ``cwd``
    or a parent, ``wrangler`` on ``PATH``, then ``npx``. ``None`` if there is no Node.js."""
    given = os.environ.get("HELIX_WRANGLER")
    if given:
        return shlex.split(given)
    here = Path(cwd or os.getcwd()).resolve()
    for folder in (here, *here.parents):
        local = folder / "node_modules" / ".bin" / "wrangler"
        if local.is_file():
            return [str(local)]
    on_path = shutil.which("wrangler")
    if on_path:
        return [on_path]
    npx = shutil.which("npx")
    if npx:
        return [npx, "--yes", "wrangler@4"]
    return None


def _toolchain_env() -> dict[str, str]:
    env = dict(os.environ)
    scripts = str(Path(sys.executable).parent)  # pywrangler looks for uv on PATH
    env["PATH"] = scripts + os.pathsep + env.get("PATH", "")
    env.setdefault("WRANGLER_SEND_METRICS", "false")
    env.setdefault("CI", "1")  # no interactive prompts
    return env


def _run(command: list[str], project: Path, what: str, timeout: float,
         capture: bool = True) -> str:
    try:
        done = subprocess.run(command, cwd=project, env=_toolchain_env(), text=True,
                              capture_output=capture, timeout=timeout)
    except FileNotFoundError:
        raise DeployError(f"{command[0]} was not found; install Node.js 20+ and run `npm "
                          f"install wrangler@{WRANGLER_VERSION}`, or set HELIX_WRANGLER.") from None
    except subprocess.TimeoutExpired:
        raise DeployError(f"{what} did not finish in {timeout:.0f} s; run it by hand in "
                          f"{project} to see why.") from None
    output = (done.stdout or "") + (done.stderr or "")
    if capture:
        (project / ".helix-deploy.log").write_text(output)
    if done.returncode != 0:
        detail = _wrangler_error(output) or f"exit status {done.returncode}"
        where = f"log: {project / '.helix-deploy.log'}" if capture else "its output is above"
        raise DeployError(f"{what} failed: {detail} ({where}).")
    return output


def _wrangler_error(output: str) -> str:
    for line in output.splitlines():
        text = line.strip().lstrip("✘▲ ").strip()
        if text.startswith("[ERROR]"):
            return text[len("[ERROR]"):].strip()[:300]
    return _last_error(output)


def deploy(*, dry_run: bool = False, name: str | None = None, agents: str | None = None,
           out_dir: str | os.PathLike[str] | None = None,
           cwd: str | os.PathLike[str] | None = None, run_toolchain: bool = True,
           log: Callable[[str], None] | None = None,
           approach: str = "durable-objects") -> DeployResult:
    """Build the Worker project and hand it to the Cloudflare toolchain.

    ``dry_run``: ``wrangler deploy --dry-run --outdir <dir>/dist`` (offline). Otherwise a
    real deploy through ``pywrangler deploy``, which needs ``CLOUDFLARE_API_TOKEN`` and
    network access. ``run_toolchain=False`` stops after the build and the import check.
    ``approach="workflows"``: the Workflows bundle, with the ``[[workflows]]``,
    ``[[d1_databases]]`` (and its schema migration) and ``STREAMS`` bindings.
    """
    if approach not in APPROACHES:
        raise DeployError(f"Unknown approach {approach!r}: use one of {', '.join(APPROACHES)}.")
    say = log or (lambda message: None)
    here = Path(cwd or os.getcwd()).resolve()
    name = _check_name(name or DEFAULT_NAME)
    agents = agents or DEFAULT_AGENTS
    if not dry_run and run_toolchain and not os.environ.get("CLOUDFLARE_API_TOKEN"):
        raise DeployError("CLOUDFLARE_API_TOKEN is not set: create a token from the 'Edit "
                          "Cloudflare Workers' template and export CLOUDFLARE_API_TOKEN=... "
                          "(or use --dry-run).")
    with _on_path(here):  # agents modules are found from where deploy runs
        _import_agents(agents)
        project = build_project(here / (out_dir or DEFAULT_DIR), name=name, agents=agents,
                                approach=approach)
    types, outside = check_bundle(project, agents, approach)
    if not types:
        raise DeployError(f"The agents module {agents!r} defines no agents; create Agent(...) "
                          "objects in it (or a `registry = AgentRegistry()`).")
    result = DeployResult(project, name, agents, types, dry_run)
    if outside:
        (project / "pyproject.toml").write_text(
            _project_files(name, agents, outside, approach)["pyproject.toml"])
        result.warnings.append(
            f"The agents import {', '.join(outside)} from outside the bundle; they were added "
            f"to {project / 'pyproject.toml'} for pywrangler to vendor (check the names).")
    say(f"wrote {project} (Worker {name!r}, agents from {agents}: {', '.join(types) or 'none'});"
        " import check passed")
    result.next_steps = [
        f"cd {project} && printf %s \"$HELIX_TOKEN\" | npx wrangler secret put HELIX_TOKEN",
        "optional: printf %s \"$ANTHROPIC_API_KEY\" | npx wrangler secret put "
        "ANTHROPIC_API_KEY",
    ]
    if not run_toolchain:
        return result
    if dry_run:
        wrangler = find_wrangler(here)
        if wrangler is None:
            raise DeployError("wrangler not found: install Node.js 20+ and run `npm install "
                              f"wrangler@{WRANGLER_VERSION}` here, or set HELIX_WRANGLER="
                              "/path/to/wrangler.")
        command = [*wrangler, "deploy", "--dry-run", "--outdir", "dist"]
        _run(command, project, "wrangler deploy --dry-run", 300)
        result.toolchain, result.outdir = command, project / "dist"
        say(f"wrangler deploy --dry-run passed ({result.outdir})")
        return result
    command = [*_pywrangler(), "deploy"]
    say(f"running {' '.join(command[-2:])} in {project} (vendors pydantic, then uploads)")
    _run(command, project, "pywrangler deploy", 1800, capture=False)
    result.toolchain = command
    return result


@contextlib.contextmanager
def _on_path(folder: Path) -> Iterator[None]:
    added = str(folder) not in sys.path
    if added:
        sys.path.insert(0, str(folder))
    try:
        yield
    finally:
        if added and str(folder) in sys.path:
            sys.path.remove(str(folder))


def _pywrangler() -> list[str]:
    """``pywrangler`` (workers-py), which vendors pydantic; it needs uv and npx."""
    scripts = Path(sys.executable).parent
    found = shutil.which("pywrangler") or (
        str(scripts / "pywrangler") if (scripts / "pywrangler").exists() else None)
    if found is None:
        raise DeployError("pywrangler was not found; a real deploy needs it to vendor pydantic:"
                          " pip install 'helix_lab[deploy]'.")
    if not (shutil.which("uv") or (scripts / "uv").exists()):
        raise DeployError("uv was not found; pywrangler uses it to vendor packages: pip "
                          "install uv.")
    if not shutil.which("npx"):
        raise DeployError("npx was not found; pywrangler runs wrangler with it: install "
                          "Node.js 20+.")
    return [found]


def describe(result: DeployResult) -> dict[str, Any]:
    """A JSON-ready summary (for ``%helix deploy`` and logs)."""
    return {"projectDir": str(result.project_dir), "name": result.name,
            "agentsModule": result.agents_module, "agentTypes": result.agent_types,
            "dryRun": result.dry_run, "outdir": str(result.outdir) if result.outdir else None,
            "warnings": result.warnings, "nextSteps": result.next_steps}

"""``helix deploy``: the Worker project it writes, its checks, and its clear errors.

The real ``wrangler deploy --dry-run`` runs only where wrangler is installed locally
(``$HELIX_WRANGLER``, ``node_modules/.bin/wrangler`` here or in a parent, or
``.ci/node/node_modules/.bin/wrangler``) and answers ``--version`` offline.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from helix_lab import deploy as deploying
from helix_lab import deploy_check
from helix_lab.cli import main
from helix_lab.deploy import COMPATIBILITY_DATE, DeployError, build_project, check_bundle, deploy

ROOT = Path(__file__).resolve().parents[1]


def _check_project(project: Path, *, agents: str, name: str) -> dict:
    config = tomllib.loads((project / "wrangler.toml").read_text())
    assert config["name"] == name
    assert config["main"] == "src/entry.py"
    assert config["compatibility_date"] == COMPATIBILITY_DATE
    assert config["compatibility_flags"] == ["python_workers"]
    assert config["durable_objects"]["bindings"] == [
        {"name": "AGENTS", "class_name": "HelixAgentServer"}]
    assert config["migrations"] == [{"tag": "v1", "new_sqlite_classes": ["HelixAgentServer"]}]
    assert config["vars"] == {"HELIX_AGENTS_MODULE": agents}
    text = "\n".join(p.read_text(errors="replace") for p in project.rglob("*")
                     if p.is_file() and p.suffix in (".toml", ".py", ".md"))
    for secret in ("HELIX_TOKEN =", "ANTHROPIC_API_KEY =", "sk-ant-"):
        assert secret not in text
    src = project / "src"
    for required in ("entry.py", "helix_lab/runtime/server.py", "helix_lab/runtime/gateway.py",
                     "helix_lab/agent.py", "helix_lab/tools.py", "helix_lab/errors.py",
                     "helix_lab/llm/offline.py", "helix_lab/worker_bundle/entry.py",
                     "helix_lab/worker_bundle/fetch_llm.py"):
        assert (src / required).is_file(), required
    for absent in ("helix_lab/client", "helix_lab/widgets", "helix_lab/magics.py",
                   "helix_lab/worker_bundle/standin", "helix_lab/cli.py"):
        assert not (src / absent).exists(), absent
    assert not any(p.is_symlink() for p in project.rglob("*"))
    assert (project / "python_modules" / "workers" / "__init__.py").is_file()
    assert not (project / "requirements.txt").exists()  # pywrangler refuses one
    pyproject = tomllib.loads((project / "pyproject.toml").read_text())
    assert any(d.startswith("pydantic") for d in pyproject["project"]["dependencies"])
    assert "wrangler secret put HELIX_TOKEN" in (project / "README.md").read_text()
    return config


def test_dry_run_project_for_a_user_module(tmp_path: Path) -> None:
    result = deploy(dry_run=True, agents="e2e_scenario", name="helix-test", cwd=tmp_path,
                    out_dir="worker", run_toolchain=False)
    project = tmp_path / "worker"
    assert result.project_dir == project and result.agent_types == ["outbox", "stepper"]
    _check_project(project, agents="e2e_scenario", name="helix-test")
    assert (project / "src" / "e2e_scenario.py").is_file()
    assert not list(project.rglob("__pycache__"))
    assert "wrangler secret put HELIX_TOKEN" in str(result)

    again = deploy(dry_run=True, agents="e2e_scenario", name="helix-test", cwd=tmp_path,
                   out_dir="worker", run_toolchain=False)  # a rerun rewrites the project
    assert again.agent_types == ["outbox", "stepper"]


def test_default_agents_ship_with_their_data(tmp_path: Path) -> None:
    result = deploy(dry_run=True, cwd=tmp_path, run_toolchain=False)
    assert "researcher" in result.agent_types
    project = tmp_path / "helix-worker"
    _check_project(project, agents="helix_lab.examples", name="helix-lab")
    assert (project / "src" / "helix_lab" / "examples" / "corpus.json").is_file()


def test_clear_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "broken_agents.py").write_text("raise RuntimeError('no agents today')\n")
    (tmp_path / "empty_agents.py").write_text("x = 1\n")

    def one_line(**kwargs: object) -> str:
        with pytest.raises(DeployError) as caught:
            deploy(cwd=tmp_path, **kwargs)  # type: ignore[arg-type]
        message = str(caught.value)
        assert "\n" not in message and "Traceback" not in message
        return message

    assert "broken_agents" in one_line(dry_run=True, agents="broken_agents",
                                       run_toolchain=False)
    assert "defines no agents" in one_line(dry_run=True, agents="empty_agents",
                                           run_toolchain=False)
    assert "Cannot find" in one_line(dry_run=True, agents="no_such_module_anywhere",
                                     run_toolchain=False)
    assert "not valid" in one_line(dry_run=True, name="Not A Name", run_toolchain=False)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "keep.txt").write_text("user data")
    assert "not written by helix deploy" in one_line(dry_run=True, out_dir="mine",
                                                      agents="e2e_scenario",
                                                      run_toolchain=False)
    assert (tmp_path / "mine" / "keep.txt").read_text() == "user data"

    monkeypatch.delenv("CLOUDFLARE_API_TOKEN", raising=False)
    assert "CLOUDFLARE_API_TOKEN" in one_line(dry_run=False, agents="e2e_scenario")

    monkeypatch.delenv("HELIX_WRANGLER", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    assert "wrangler not found" in one_line(dry_run=True, agents="e2e_scenario",
                                            out_dir="no-toolchain")


def test_cli_deploy_reports_errors_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["deploy", "--dry-run", "--agents", "no_such_module_anywhere"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("helix: error: ") and err.count("\n") == 1


def _offline_wrangler() -> str | None:
    candidates = [os.environ.get("HELIX_WRANGLER"),
                  str(ROOT / "node_modules" / ".bin" / "wrangler"),
                  str(ROOT / ".ci" / "node" / "node_modules" / ".bin" / "wrangler")]
    for candidate in filter(None, candidates):
        if not Path(candidate.split()[0]).is_file():
            continue
        try:
            done = subprocess.run([*candidate.split(), "--version"], capture_output=True,
                                  text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if done.returncode == 0:
            return candidate
    return None


def wrangler_dry_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bundled: tuple[str, ...],
                     **options: Any) -> str:
    """``helix deploy --dry-run`` with ``options`` through the local wrangler (the test is
    skipped without one); check that ``bundled`` went into the bundle, return the deploy log."""
    wrangler = _offline_wrangler()
    if wrangler is None:
        pytest.skip("no local wrangler; CI: npm install --prefix .ci/node wrangler@"
                    f"{deploying.WRANGLER_VERSION}")
    monkeypatch.setenv("HELIX_WRANGLER", wrangler)
    result = deploy(dry_run=True, cwd=tmp_path, **options)
    dist = result.outdir
    assert dist is not None and result.toolchain is not None
    for path in ("entry.py", "python_modules/workers/__init__.py", *bundled):
        assert (dist / path).is_file(), path
    return (result.project_dir / ".helix-deploy.log").read_text()


def test_wrangler_dry_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = wrangler_dry_run(tmp_path, monkeypatch, ("helix_lab/worker_bundle/entry.py",
                                                   "helix_lab/examples/corpus.json"))
    assert "env.AGENTS (HelixAgentServer)" in log and "--dry-run: exiting now." in log


def test_the_console_script_is_declared() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["scripts"]["helix"] == "helix_lab.cli:main"
    done = subprocess.run([sys.executable, "-m", "helix_lab.cli", "deploy", "--help"],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0 and "--dry-run" in done.stdout


# -- the import check and the templates ------------------------------------------------------


def _module(name: str, path: str | None) -> ModuleType:
    module = ModuleType(name)
    if path is not None:
        module.__file__ = path
    return module


def test_the_check_lists_only_third_party_modules_from_outside_the_bundle(
        tmp_path: Path) -> None:
    import json as stdlib_json

    import pydantic

    src = str(tmp_path / "src")
    modules = {
        "already_there": _module("already_there", "/elsewhere/already_there.py"),
        "mine": _module("mine", f"{src}/mine.py"),
        "mine.sub": _module("mine.sub", f"{src}/mine/sub.py"),
        "json": stdlib_json,
        "workers": _module("workers", "/host/workers/__init__.py"),
        "builtin_thing": _module("builtin_thing", None),
        "pydantic": pydantic,
        "stray.deep": _module("stray.deep", "/elsewhere/stray/deep.py"),
    }
    outside = deploy_check.imported_from_outside(modules, ["already_there"], src)
    assert outside == ["pydantic", "stray"]


def test_the_check_refuses_a_bundle_without_its_own_helix_lab(tmp_path: Path) -> None:
    project = build_project(tmp_path / "worker", agents="helix_lab.examples")
    assert check_bundle(project, "helix_lab.examples")[0] == ["briefing", "researcher"]
    for path in sorted((project / "src" / "helix_lab").rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    (project / "src" / "helix_lab").rmdir()
    # Whatever helix_lab the interpreter finds instead (an installed one, or none), the
    # check says the bundle is not whole.
    with pytest.raises(DeployError, match=r"not the bundle|does not import"):
        check_bundle(project, "helix_lab.examples")


def test_the_project_files_come_from_the_shipped_templates() -> None:
    files = deploying._project_files("my-agents", "my_agents", ["numpy>=2"])
    assert set(files) == {"src/entry.py", "wrangler.toml", "pyproject.toml", "README.md",
                          ".gitignore"}
    config = tomllib.loads(files["wrangler.toml"])
    assert config["name"] == "my-agents" and config["vars"] == {"HELIX_AGENTS_MODULE": "my_agents"}
    assert tomllib.loads(files["pyproject.toml"])["project"]["dependencies"] == [
        "pydantic>=2.7,<3", "anyio>=4", "numpy>=2"]
    compile(files["src/entry.py"], "entry.py", "exec")
    for text in files.values():  # every placeholder was filled; only shell variables remain
        assert "$name" not in text and "$agents" not in text and "$$" not in text
    assert '"$HELIX_TOKEN"' in files["README.md"] and "my-agents.<your-subdomain>" in files[
        "README.md"]


def test_the_wheel_ships_the_templates_and_the_check(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                           "--no-build-isolation", "-w", str(tmp_path), str(ROOT)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    [wheel] = tmp_path.glob("helix_lab-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    templates = {p.name for p in (ROOT / "helix_lab" / "deploy_templates").iterdir()}
    assert templates >= {"wrangler.toml.tmpl", "entry.py.tmpl", "pyproject.toml.tmpl",
                         "README.md.tmpl", "gitignore.tmpl"}
    assert {f"helix_lab/deploy_templates/{t}" for t in templates} <= names
    assert "helix_lab/deploy_check.py" in names
    assert "helix_lab/examples/corpus.json" in names


def test_a_module_of_plain_agent_definitions_serves_them(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "plain_agents.py").write_text(
        "from helix_lab import Agent\n"
        "helper = Agent(name='helper')\n"
        "boss = Agent(name='boss', agents=[helper, Agent(name='inline_sub')])\n"
        "draft = Agent(name='draft', register=False)\n")
    result = deploy(dry_run=True, agents="plain_agents", cwd=tmp_path, run_toolchain=False)
    assert result.agent_types == ["boss", "helper", "inline_sub"]

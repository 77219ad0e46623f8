"""``helix deploy --approach workflows``: the project it writes (the [[workflows]],
[[d1_databases]] and STREAMS bindings, both Python flags, the D1 migration), its import
check against the stand-in, and ``wrangler deploy --dry-run`` on it, offline."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from test_deploy import wrangler_dry_run

from helix_lab.cli import main
from helix_lab.deploy import deploy
from helix_lab.errors import DeployError
from helix_lab.workflows import LocalD1


def _check_config(project: Path, name: str) -> dict:
    config = tomllib.loads((project / "wrangler.toml").read_text())
    assert config["name"] == name and config["main"] == "src/entry.py"
    assert set(config["compatibility_flags"]) == {"python_workers", "python_workflows"}
    (workflow,) = config["workflows"]
    assert workflow == {"name": f"{name}-agent", "binding": "AGENT_WORKFLOW",
                        "class_name": "AgentWorkflow"}
    (d1,) = config["d1_databases"]
    assert d1["binding"] == "AGENT_DB" and d1["migrations_dir"] == "migrations"
    assert d1["database_name"] == f"{name}-db"
    (streams,) = config["durable_objects"]["bindings"]
    assert streams == {"name": "STREAMS", "class_name": "StreamServerObject"}
    assert config["migrations"] == [{"tag": "v1", "new_sqlite_classes": ["StreamServerObject"]}]
    entry = (project / "src" / "entry.py").read_text()
    assert "AgentWorkflow" in entry and "StreamServerObject" in entry and "Default" in entry
    return config


async def test_the_workflows_project_and_its_d1_migration(tmp_path: Path) -> None:
    result = deploy(dry_run=True, agents="e2e_scenario", name="helix-wf", cwd=tmp_path,
                    out_dir="worker", run_toolchain=False, approach="workflows")
    project = tmp_path / "worker"
    assert "stepper" in result.agent_types  # the bundle imported and answered /agents
    _check_config(project, "helix-wf")
    for shipped in ("helix_lab/workflows/binding.py", "helix_lab/worker_bundle/workflows_app.py",
                    "e2e_scenario.py"):
        assert (project / "src" / shipped).is_file(), shipped
    (migration,) = sorted((project / "migrations").glob("*.sql"))
    db = LocalD1(tmp_path / "d1.sqlite3")  # the migration applies to a fresh D1
    await db.exec(migration.read_text())
    tables = await db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' "
                              "ORDER BY name").raw()
    assert [t[0] for t in tables] == ["helix_wf_checkpoints", "helix_wf_messages",
                                      "helix_wf_sessions", "helix_wf_usage"]
    db.close()
    # Switching approach in the same folder rewrites the project for the other one.
    deploy(dry_run=True, agents="e2e_scenario", name="helix-wf", cwd=tmp_path,
           out_dir="worker", run_toolchain=False)
    assert "workflows" not in tomllib.loads((project / "wrangler.toml").read_text())
    assert not (project / "migrations").exists()


def test_an_unknown_approach_is_a_one_line_error(tmp_path: Path, monkeypatch, capsys) -> None:
    with pytest.raises(DeployError, match="Unknown approach 'lambda'"):
        deploy(dry_run=True, cwd=tmp_path, approach="lambda", run_toolchain=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exited:  # argparse refuses it, in one line
        main(["deploy", "--dry-run", "--approach", "lambda"])
    assert exited.value.code == 2
    assert "invalid choice: 'lambda'" in capsys.readouterr().err


def test_wrangler_dry_run_of_the_workflows_bundle(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    log = wrangler_dry_run(tmp_path, monkeypatch, ("helix_lab/worker_bundle/workflows_app.py",
                                                   "helix_lab/workflows/agent_steps.py"),
                           approach="workflows", name="helix-wf")
    assert "env.AGENT_WORKFLOW" in log and "env.AGENT_DB" in log and "env.STREAMS" in log
    assert "--dry-run: exiting now." in log

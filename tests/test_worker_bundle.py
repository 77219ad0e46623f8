"""The Worker bundle's modules: ``EnvView`` as its public reading of ``env``, and hosts that
use only the bundle's public names.

``helix serve`` (and any other host) builds the Worker from the bundle's public modules;
reaching into a private name would tie a host to one module's insides, which is what the
split of ``entry.py`` by concern removed.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from helix_lab.worker_bundle.env import EnvView
from helix_lab.worker_bundle.standin import Env

ROOT = Path(__file__).resolve().parents[1] / "helix_lab"
SECRET = "sk-ant-not-for-printing-0123"


def test_env_view_reads_a_worker_env_every_way_and_never_shows_a_value() -> None:
    env = EnvView(Env(ANTHROPIC_API_KEY=SECRET, HELIX_AGENTS_MODULE="mine", EMPTY=None))
    assert env["ANTHROPIC_API_KEY"] == env.get("ANTHROPIC_API_KEY") == SECRET
    assert env.HELIX_AGENTS_MODULE == "mine"
    assert "HELIX_AGENTS_MODULE" in env and "MISSING" not in env and 3 not in env
    assert env.get("MISSING") is None and env.get("MISSING", "fallback") == "fallback"
    assert env.get("EMPTY", "fallback") == "fallback"
    with pytest.raises(KeyError):
        env["MISSING"]
    with pytest.raises(AttributeError):
        env.MISSING  # noqa: B018
    assert SECRET not in repr(env) and SECRET not in str(env)


def _private_worker_bundle_names(path: Path) -> list[str]:
    """``worker_bundle`` names starting with ``_`` that ``path`` imports or reaches into."""
    tree = ast.parse(path.read_text())
    bundle_aliases: set[str] = set()
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and "worker_bundle" in (node.module or ""):
            for alias in node.names:
                if alias.name.startswith("_"):
                    found.append(f"{node.module}.{alias.name}")
                bundle_aliases.add(alias.asname or alias.name)
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id in bundle_aliases and node.attr.startswith("_")
                and not node.attr.startswith("__")):
            found.append(f"{node.value.id}.{node.attr}")
    return found


@pytest.mark.parametrize("host", ["serve.py", "deploy.py"])
def test_hosts_use_only_public_names_of_the_bundle(host: str) -> None:
    assert _private_worker_bundle_names(ROOT / host) == []


def test_the_checker_finds_a_private_name(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("from .worker_bundle import entry\nentry._EnvView(1)\n"
                      "from .worker_bundle.agents import _LOADED\n")
    assert sorted(_private_worker_bundle_names(sample)) == ["entry._EnvView",
                                                           "worker_bundle.agents._LOADED"]

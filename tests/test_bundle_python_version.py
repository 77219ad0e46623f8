"""The Worker bundle must run on the Python Cloudflare runs (3.13 today): nothing newer than 3.12.

The Pyodide tier runs the bundle on Python 3.14, so it cannot catch a 3.14-only feature.
Two checkers cover that: ``ruff --target-version py312`` reports syntax added after 3.12
(PEP 696 defaults, unparenthesised ``except A, B``, t-strings), and ``vermin -t=3.12-``
reports standard-library names added after 3.12 (``copy.replace``, ``warnings.deprecated``).
A planted file proves each checker still catches what it is here for.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from helix_lab.deploy import build_project

BIN = Path(sys.executable).parent
NEWER_SYNTAX = '''
class Box[T = int]:
    pass

try:
    pass
except ValueError, TypeError:
    pass
'''
NEWER_STDLIB = '''
import copy
import warnings


@warnings.deprecated("use g")
def f() -> object:
    return copy.replace(object())
'''


def newer_than_312(src: Path) -> list[str]:
    """Every finding of the two checkers on the Python files under ``src``."""
    ruff = subprocess.run([str(BIN / "ruff"), "check", "--isolated", "--no-cache",
                           "--target-version", "py312", "--select", "E9",
                           "--output-format", "concise", str(src)],
                          capture_output=True, text=True, timeout=120)
    found = [line for line in ruff.stdout.splitlines() if "syntax" in line.lower()]
    assert ruff.returncode in (0, 1) and (ruff.returncode == 0) == (not found), ruff.stdout
    vermin = subprocess.run([str(BIN / "vermin"), "--no-tips", "--no-parse-comments",
                             "--violations", "-t=3.12-", str(src)],
                            capture_output=True, text=True, timeout=120)
    findings = [line.strip() for line in vermin.stdout.splitlines()
                if "requires" in line or "error" in line.lower()]
    assert vermin.returncode in (0, 1) and (vermin.returncode == 0) == (not findings), (
        vermin.stdout + vermin.stderr)
    return found + findings


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_project(tmp_path_factory.mktemp("bundle") / "worker")


def test_the_bundle_uses_nothing_newer_than_python_312(bundle: Path) -> None:
    sources = sorted((bundle / "src").rglob("*.py"))
    assert len(sources) > 20 and (bundle / "src" / "helix_lab" / "runtime" / "server.py").exists()
    assert newer_than_312(bundle / "src") == []


def test_the_checkers_catch_newer_syntax_and_stdlib(tmp_path: Path) -> None:
    (tmp_path / "syntax.py").write_text(NEWER_SYNTAX)
    (tmp_path / "stdlib.py").write_text(NEWER_STDLIB)
    found = "\n".join(newer_than_312(tmp_path))
    assert "Python 3.13" in found and "Python 3.14" in found  # from ruff
    assert "copy.replace" in found and "warnings.deprecated" in found  # from vermin

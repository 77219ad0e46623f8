"""The stand-in follows the real ``workers`` SDK on every name the bundle uses.

``helix serve`` runs the bundle against :mod:`helix_lab.worker_bundle.standin`; Cloudflare
and the Pyodide tier run it against ``workers-runtime-sdk`` (a dev dependency, the version
``helix deploy`` vendors). The real SDK imports workerd- and Pyodide-only modules, so
placeholders stand in for those while it is imported here; its own classes and signatures
are real. Its ``Response`` builds on Pyodide's ``FetchResponse``, read from the Pyodide
standard library the Pyodide tier installs.

If the stand-in offered a name the SDK lacks, the bundle could come to rely on it and
break only once deployed; so every public name of a stand-in class the bundle uses must
exist on the real class, with the same parameters and the same sync/async kind.
"""

from __future__ import annotations

import ast
import contextlib
import inspect
import sys
import types
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from helix_lab.pyodide_host import NPM_PACKAGES, home, install
from helix_lab.worker_bundle import standin
from helix_lab.worker_bundle.standin import js as standin_js
from helix_lab.worker_bundle.standin import workers as standin_workers

BUNDLE = Path(standin.__file__).resolve().parents[1]
CLASSES = ("Request", "Response", "FetchResponse", "DurableObject", "WorkerEntrypoint")
_PLATFORM_MODULES = ("js", "pyodide", "pyodide.ffi", "pyodide.http",
                     "_pyodide_entrypoint_helper", "_cloudflare_compat_flags")


class _Placeholder(types.ModuleType):
    """A workerd/Pyodide module: any name is a new empty class."""

    def __getattr__(self, name: str) -> type:
        if name.startswith("__"):
            raise AttributeError(name)
        made = type(name, (), {})
        setattr(self, name, made)
        return made


@contextlib.contextmanager
def _platform_placeholders() -> Iterator[None]:
    saved = {name: module for name, module in sys.modules.items()
             if name in _PLATFORM_MODULES or name == "workers" or name.startswith("workers.")}
    for name in saved:
        del sys.modules[name]
    made = {name: _Placeholder(name) for name in _PLATFORM_MODULES}
    made["pyodide"].__version__ = NPM_PACKAGES["pyodide"]
    made["pyodide"].http = made["pyodide.http"]
    made["pyodide"].ffi = made["pyodide.ffi"]
    sys.modules.update(made)
    try:
        yield
    finally:
        for name in [n for n in sys.modules if n in made or n == "workers"
                     or n.startswith("workers.")]:
            del sys.modules[name]
        sys.modules.update(saved)


@pytest.fixture(scope="module")
def real() -> types.ModuleType:
    """The real ``workers`` package of workers-runtime-sdk."""
    with _platform_placeholders():
        import workers

        assert "site-packages" in (workers.__file__ or "")
        return workers


@pytest.fixture(scope="module")
def pyodide_fetch_response() -> dict[str, str]:
    """Public members of Pyodide's own ``FetchResponse`` (the SDK's base): name -> kind."""
    install()  # pinned and cached: a no-op after `make pyodide-deps`
    archive = home() / "node" / "node_modules" / "pyodide" / "python_stdlib.zip"
    with zipfile.ZipFile(archive) as stdlib:
        tree = ast.parse(stdlib.read("pyodide/http/_pyfetch.py"))
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "FetchResponse")
    kinds = {}
    for node in cls.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name[0] != "_":
            decorators = {ast.unparse(d) for d in node.decorator_list}
            kinds[node.name] = ("property" if "property" in decorators else
                                "async" if isinstance(node, ast.AsyncFunctionDef) else "sync")
    assert {"status", "headers", "bytes", "text", "json"} <= set(kinds)
    return kinds


def _bundle_imports(module: str) -> set[str]:
    """Names the bundle's modules (not the stand-in) import from ``module``."""
    names = set()
    for path in BUNDLE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == module and not node.level:
                names |= {alias.name for alias in node.names}
    return names


def _kind(owner: type, name: str) -> str:
    value = inspect.getattr_static(owner, name)
    if isinstance(value, property):
        return "property"
    if isinstance(value, staticmethod | classmethod):
        value = value.__func__
    if not callable(value):
        return "property"  # a plain attribute reads like a property
    return "async" if inspect.iscoroutinefunction(value) else "sync"


def test_the_bundle_imports_only_names_both_provide(real: types.ModuleType) -> None:
    used = _bundle_imports("workers")
    assert {"DurableObject", "Response", "WorkerEntrypoint", "fetch"} <= used
    assert used <= set(real.__all__), used - set(real.__all__)
    assert all(hasattr(standin_workers, name) for name in used)
    for name in _bundle_imports("js"):  # the Pyodide host provides these as JS globals
        assert hasattr(standin_js, name), name


def _kinds(owner: type, instance: object = None) -> dict[str, str]:
    """Public members of a class (and of an instance of it) -> property/sync/async."""
    kinds = {name: _kind(owner, name) for name in dir(owner) if not name.startswith("_")}
    for name in vars(instance) if instance is not None else ():
        if not name.startswith("_"):
            kinds[name] = "property"  # set in __init__: read like a property
    return kinds


@pytest.mark.parametrize("name", CLASSES)
def test_stand_in_classes_offer_nothing_the_sdk_lacks(real: types.ModuleType, name: str,
                                                      pyodide_fetch_response: dict[str, str]
                                                      ) -> None:
    ours, theirs = getattr(standin_workers, name), getattr(real, name)
    expected = dict(pyodide_fetch_response) if "Response" in name else {}
    expected.update(_kinds(theirs))  # the SDK's own members override Pyodide's
    offered = _kinds(ours, ours() if "Response" in name else None)
    extra = sorted(set(offered) - set(expected))
    assert not extra, f"the stand-in's {name} has {extra}, the SDK's has not"
    differ = {m: (offered[m], expected[m]) for m in offered if offered[m] != expected[m]}
    assert not differ, f"{name}: (stand-in, SDK) kinds differ: {differ}"


def _parameters(function: object) -> list[str]:
    return [p.name for p in inspect.signature(function).parameters.values()
            if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]


def _positional(function: object) -> list[str]:
    return [p.name for p in inspect.signature(function).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]


def _declared_init(cls: type) -> object:
    """``cls.__init__`` as written: the SDK wraps it (to wrap ``env``) without functools.wraps."""
    init = cls.__init__
    for cell in getattr(init, "__closure__", None) or ():
        if inspect.isfunction(cell.cell_contents) and cell.cell_contents.__name__ == "__init__":
            return cell.cell_contents
    return init


def test_constructors_and_fetch_take_what_the_sdk_takes(real: types.ModuleType) -> None:
    for name in ("Response", "DurableObject", "WorkerEntrypoint"):
        assert _parameters(getattr(standin_workers, name).__init__) == _parameters(
            _declared_init(getattr(real, name))), name
    assert _parameters(standin_workers.Response.from_json) == _parameters(
        real.Response.from_json)
    # The SDK's fetch and Request take **FetchKwargs: every keyword ours names is one of them.
    options = set(real.FetchKwargs.__annotations__)
    for ours, theirs in ((standin_workers.fetch, real.fetch),
                         (standin_workers.Request.__init__, real.Request.__init__)):
        assert _positional(ours) == _positional(theirs), ours
        keywords = {p.name for p in inspect.signature(ours).parameters.values()
                    if p.kind == p.KEYWORD_ONLY}
        assert keywords and keywords <= options, keywords - options

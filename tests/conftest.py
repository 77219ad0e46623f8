"""Shared test setup: import helix_lab from this checkout, and keep real credentials out.

Tests talk to fake servers (``tests/fakes``); scrubbing the credential variables means a
test can never reach a real model API with a developer's key by accident. A test that
needs one sets it with ``monkeypatch.setenv``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

    from dummy_comm import CommRecorder
    from served import Served

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

_CREDENTIAL_VARIABLES = (
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
    "ANTHROPIC_BASE_URL",
    "OPENAI_API_KEY",
)


@pytest.fixture(autouse=True)
def _no_real_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _CREDENTIAL_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
async def make_runtime(tmp_path: Path):
    """Build ``helpers.Runtime`` objects on sqlite files under ``tmp_path``; close them
    at teardown, and fail the test if any response was a 500 or carried a traceback."""
    from helpers import Runtime

    made: list[Runtime] = []

    def make(agents, llm, **options):  # type: ignore[no-untyped-def]
        runtime = Runtime(tmp_path / f"storage{len(made)}", agents, llm, **options)
        made.append(runtime)
        return runtime

    yield make
    for runtime in made:
        await runtime.close()
    problems = [p for runtime in made for p in runtime.violations]
    assert not problems, problems


@pytest.fixture
def comms(monkeypatch: pytest.MonkeyPatch) -> CommRecorder:
    """Widgets open recording dummy comms (``dummy_comm.CommRecorder``) instead of a kernel's;
    a widget test module uses it for every test through its ``pytestmark``."""
    from dummy_comm import record_comms

    return record_comms(monkeypatch)


@pytest.fixture
def views() -> Any:
    """The widget views a test opens (append them), closed when it ends."""
    made: list[Any] = []
    yield made
    for view in made:
        view.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """``helix serve`` on the e2e scenario's agents (``served.Served``), one per test module
    that asks for it; a module needing other options defines its own ``served``."""
    from served import Served

    server = Served(tmp_path_factory.mktemp("serve") / "objects").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def local_summary() -> dict[str, Any]:
    """The e2e scenario's summary on an in-kernel LocalBackend: every remote tier must match it."""
    import e2e_scenario

    return e2e_scenario.run_in_kernel(e2e_scenario.run_scenario)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--soak", action="store_true", default=False,
        help="run the long reliability variants: more crash trials, more sessions, longer load")


@pytest.fixture
def soak(request: pytest.FixtureRequest) -> bool:
    """True under ``pytest --soak``: the reliability tests scale up trials and duration."""
    return bool(request.config.getoption("--soak"))

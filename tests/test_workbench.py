"""The notebook's model choice: what ``%helix llm`` switches between."""

from __future__ import annotations

from pathlib import Path

import pytest

from helix_lab.errors import UserError
from helix_lab.workbench import Workbench


def cassette(tmp_path: Path) -> str:
    path = tmp_path / "c.jsonl"
    path.write_text("")
    return str(path)


def test_auto_replays_the_cassette_without_a_key(tmp_path: Path) -> None:
    wb = Workbench(storage=tmp_path / "s")
    choice = wb.use_llm("auto", cassette(tmp_path))
    assert choice.kind == "replay"
    assert "set ANTHROPIC_API_KEY for Claude" in choice.label


def test_auto_uses_claude_when_a_key_is_set(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test-auto-key")
    wb = Workbench(storage=tmp_path / "s")
    assert wb.llm.kind == "anthropic"  # the default, too
    choice = wb.use_llm("auto", cassette(tmp_path))
    assert choice.kind == "anthropic"
    assert "sk-test-auto-key" not in choice.label + repr(choice.adapter)


def test_auto_without_a_cassette_is_the_offline_model(tmp_path: Path) -> None:
    assert Workbench(storage=tmp_path / "s").use_llm("auto").kind == "offline"


def test_storage_comes_from_helix_storage(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HELIX_STORAGE", str(tmp_path / "elsewhere"))
    assert Workbench().storage == str(tmp_path / "elsewhere")


@pytest.mark.parametrize(("args", "problem"), [
    (("replay", "missing.jsonl"), "No cassette"),
    (("openai", "http://127.0.0.1:1/v1"), "Usage: %helix llm openai URL MODEL"),
    (("anthropic",), "ANTHROPIC_API_KEY is not set"),
    (("gpt-9",), "Unknown model"),
])
def test_bad_model_choices_say_what_to_do(tmp_path: Path, args: tuple[str, ...],
                                          problem: str) -> None:
    wb = Workbench(storage=tmp_path / "s")
    with pytest.raises(UserError, match=problem):
        wb.use_llm(*args)
    assert wb.llm.kind == "offline"  # a refused switch keeps the model in use

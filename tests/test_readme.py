"""The README's Python example runs as written, in a fresh interpreter, and prints the
stream it promises."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_readme_example_runs_and_streams(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    (example,) = [block for block in re.findall(r"```python\n(.*?)```", readme, re.S)
                  if "asyncio.run(main())" in block]
    script = tmp_path / "example.py"
    script.write_text(example)
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[-1] == "result: 2 + 3 = 5"
    kinds = [line.split()[1] for line in lines[:-1]]
    assert kinds[0] == "run_started" and kinds[-1] == "run_completed"
    assert "tool_start" in kinds and "tool_end" in kinds and "thinking" in kinds
    assert [int(line.split()[0]) for line in lines[:-1]] == list(range(1, len(lines)))
    assert not (tmp_path / ".helix").exists()  # storage=":memory:" as the example says

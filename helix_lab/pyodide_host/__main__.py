"""``python -m helix_lab.pyodide_host install``: fetch the pinned npm packages and wheels."""

from __future__ import annotations

import sys

from . import PyodideHostError, home, install


def main(argv: list[str]) -> int:
    if argv != ["install"]:
        print("usage: python -m helix_lab.pyodide_host install", file=sys.stderr)
        return 2
    try:
        done = install(quiet=False)
    except PyodideHostError as exc:
        print(f"helix: error: {exc}", file=sys.stderr)
        return 2
    print(f"installed {', '.join(done)} under {home()}" if done else
          f"the Pyodide host is installed under {home()}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

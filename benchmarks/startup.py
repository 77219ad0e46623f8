"""Figure 7: start-up. ``import helix_lab`` and ``%load_ext helix_lab`` in a fresh process.

Each is the best wall time of ``python -c ...`` over N runs, against ``python -c "import
json"`` (the interpreter's own start-up). ``%load_ext`` runs in an IPython
``InteractiveShell`` made in the same process, so an IPython shell alone is measured too,
and helix_lab's part of ``%load_ext`` is the difference.
"""

from __future__ import annotations

from .common import Context, Figure, Ratio, python_startup

GOAL_IMPORT = 1.5
"""``import helix_lab`` stays fast: at most 1.5x a bare interpreter (our target)."""

SHELL = "from IPython.core.interactiveshell import InteractiveShell; sh = InteractiveShell.instance()"
CODES = {
    "json": "import json",
    "import": "import helix_lab",
    "shell": SHELL,
    "load_ext": SHELL + "; sh.run_line_magic('load_ext', 'helix_lab')",
}


def measure(ctx: Context) -> Figure:
    repeat = ctx.n(10, 2)
    ctx.log(f"best of {repeat} fresh interpreters for each of {', '.join(CODES)}")
    # Interleave the rounds, so that a burst of load elsewhere hits every variant alike.
    best = {name: float("inf") for name in CODES}
    for _ in range(repeat):
        for name, code in CODES.items():
            best[name] = min(best[name], python_startup(code, 1))
    base = best["json"]
    own = max(best["load_ext"] - best["shell"], 0.0)
    imp = best["import"] / base
    return Figure(
        number=7, title="Start-up",
        measures=f"Wall time of a fresh `python -c ...` (best of {repeat}): `import helix_lab`; "
        "`%load_ext helix_lab` in an IPython InteractiveShell.",
        baseline='`python -c "import json"` (the interpreter\'s own start-up), same runs.',
        ratios=[
            Ratio.at_most("import helix_lab ÷ import json", imp, f"{imp:.2f}", GOAL_IMPORT,
                          goal=f"≤ {GOAL_IMPORT} (our target: stays fast)"),
            Ratio("IPython shell + %load_ext helix_lab ÷ import json", best["load_ext"] / base,
                  f"{best['load_ext'] / base:.1f}"),
            Ratio("helix_lab's part of %load_ext ÷ import json", own / base, f"{own / base:.1f}"),
        ],
        raw=[
            ('python -c "import json"', f"{base * 1000:.0f} ms"),
            ('python -c "import helix_lab"', f"{best['import'] * 1000:.0f} ms"),
            ("python: an IPython InteractiveShell", f"{best['shell'] * 1000:.0f} ms"),
            ("python: an IPython InteractiveShell, then %load_ext helix_lab",
             f"{best['load_ext'] * 1000:.0f} ms (helix_lab's part: {own * 1000:.0f} ms)"),
        ],
        notes=[
            "`import helix_lab` imports nothing heavy: its public names load on first use. "
            "`%load_ext` registers the magics and loads the bundled example agents, which "
            "brings in pydantic, the runtime and the offline model; the widgets and the "
            "model SDKs still load only when a cell needs them.",
        ],
        plan=None if imp <= GOAL_IMPORT else (
            "`python -X importtime -c 'import helix_lab'` shows that the package imports "
            "nothing heavy; beyond the interpreter it loads `typing` (for `TYPE_CHECKING` and "
            "`Any`) and `collections.abc`, a few milliseconds. Writing `TYPE_CHECKING = False` "
            "and string annotations in `helix_lab/__init__.py` and `_lazy.py` would remove "
            "them; on a loaded machine the rest is noise, so re-run on an idle one first."),
    )

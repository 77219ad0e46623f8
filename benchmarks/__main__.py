"""``python -m benchmarks [--quick] [--out PATH] [--only NAME,...]``: run, print, write.

Without ``--quick`` the results go to ``benchmarks/RESULTS.md`` (``--out`` to change it);
with ``--quick`` they are written only when ``--out`` is given, so a smoke run never
overwrites the real results. The exit status is 1 if a benchmark raised.
"""

from __future__ import annotations

import argparse
import importlib
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

from . import BENCHMARKS
from .common import Context, Figure, machine_info
from .report import render_markdown, render_table

DEFAULT_OUT = Path(__file__).resolve().parent / "RESULTS.md"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="small workloads (a smoke run; the numbers mean little)")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"where to write the results (default {DEFAULT_OUT}, "
                        "or nowhere with --quick)")
    parser.add_argument("--only", default="", metavar="NAME,...",
                        help=f"run only these benchmarks: {', '.join(BENCHMARKS)}")
    parser.add_argument("--keep", action="store_true",
                        help="keep the scratch directory (its path is printed)")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(BENCHMARKS)
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from "
                     f"{', '.join(BENCHMARKS)}")
    out = args.out if args.out is not None else (None if args.quick else DEFAULT_OUT)

    command = "python -m benchmarks" + (" --quick" if args.quick else "") + (
        f" --only {','.join(names)}" if args.only else "")
    machine = machine_info()
    workdir = Path(tempfile.mkdtemp(prefix="helix-bench-"))
    ctx = Context(quick=args.quick, workdir=workdir)
    figures: list[Figure] = []
    errors: list[tuple[str, str]] = []
    durations: dict[str, float] = {}
    started = time.perf_counter()
    try:
        for name in names:
            print(f"[{name}]", file=sys.stderr, flush=True)
            t0 = time.perf_counter()
            try:
                module = importlib.import_module(f"benchmarks.{name}")
                figures.append(module.measure(ctx))
            except Exception:
                errors.append((name, traceback.format_exc()))
                print(errors[-1][1], file=sys.stderr)
            durations[name] = time.perf_counter() - t0
            print(f"  done in {durations[name]:.1f} s", file=sys.stderr, flush=True)
    finally:
        if args.keep:
            print(f"scratch directory kept: {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    total = time.perf_counter() - started
    machine["load_after"] = machine_info()["load"]
    print()
    print(render_table(figures))
    for name, error in errors:
        print(f"\n{name} FAILED:\n{error}")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(render_markdown(figures, errors, machine=machine, command=command,
                                       quick=args.quick, durations=durations, total=total))
        print(f"\nwrote {out}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())

"""Run chapters as plain scripts in one profile, from a cold model cache, and time every cell.

    python benchmarks/run_chapter.py 07 appD --profile cpu
    python benchmarks/run_chapter.py 07 --profile gpu --record --out /tmp/records

Needs neither Jupyter nor IPython (the GPU machine has neither): the code cells of each
``chapters/*.md`` are read from the MyST text and executed in order in a fresh interpreter with
``GENLIB_PROFILE``, ``GENLIB_STATIC=1`` and a fresh ``GENLIB_CACHE`` (pass ``--cache DIR`` to share
one between chapters, as a reader's machine does). Prints the time of each cell that took more
than a second, the chapter's total against its profile's budget (BOOK: ci 90 s, cpu 5 min,
gpu 3 min on one H100), every invariant's ``PASS`` line and every ``VERDICT`` line; a failed
invariant (``genlib.viz.InvariantError``) stops its chapter with a non-zero exit. ``--record`` sets
``GENLIB_RECORD=1`` so the chapter writes its reproduction tables to ``chapters/records/``;
``--out`` copies the records this run wrote there as well, with each chapter's full printed output.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = ROOT / "chapters"
BUDGET_S = {"ci": 90, "cpu": 300, "gpu": 180}
_CELL = re.compile(r"^```\{code-cell\}[^\n]*\n(.*?)^```\s*$", re.S | re.M)


def code_cells(md: Path) -> list[str]:
    """The source of every code cell of a MyST notebook, in order, without its option lines."""
    cells = []
    for body in _CELL.findall(md.read_text()):
        lines = body.splitlines()
        if lines and lines[0].strip() == "---":  # a YAML option block
            end = next((i for i, line in enumerate(lines[1:], 1) if line.strip() == "---"), 0)
            lines = lines[end + 1:]
        while lines and lines[0].startswith(":") and ":" in lines[0][1:]:  # `:tags: [...]` lines
            lines = lines[1:]
        cells.append("\n".join(lines))
    return cells


def find_chapter(name: str) -> Path:
    path = Path(name)
    if path.suffix == ".md" and path.exists():
        return path.resolve()
    hits = sorted(CHAPTERS.glob(f"{name}*.md"))
    if len(hits) != 1:
        known = ", ".join(p.stem for p in sorted(CHAPTERS.glob("*.md")))
        raise SystemExit(f"no single chapter matches {name!r} (found {len(hits)}); chapters: {known}")
    return hits[0]


def _child(md: Path) -> None:
    """Executed in the fresh interpreter: run the cells, report per-cell times as JSON lines."""
    os.chdir(md.parent)
    # a notebook kernel does not see benchmarks/: its kernels.py would shadow any module named
    # "kernels" (transformers probes for one), so drop this script's folder from the path
    here = Path(__file__).resolve().parent
    sys.path[:] = [str(md.parent)] + [p for p in sys.path if Path(p or ".").resolve() != here]
    namespace: dict = {"__name__": "__main__"}
    for i, src in enumerate(code_cells(md)):
        start = time.perf_counter()
        tree = ast.parse(src)
        last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
        exec(compile(tree, f"<{md.stem} cell {i}>", "exec"), namespace)
        if last is not None:  # what a notebook would display: tables and plain values as text
            value = eval(compile(ast.Expression(last.value), f"<{md.stem} cell {i}>", "eval"), namespace)
            if type(value).__name__ == "Table" or isinstance(value, (str, int, float)):
                print(repr(value))
        first = next((line for line in src.splitlines() if line.strip() and not line.startswith("#")), "")
        print("@@cell " + json.dumps({"cell": i, "s": time.perf_counter() - start, "line": first[:70]}), flush=True)


def record_id(md: Path) -> str:
    """The chapter id a chapter's records and verdicts start with: ``07`` for 07_ddpm, ``appD``."""
    return md.stem.split("_")[0]


def run(md: Path, profile: str, cache: str | None, record: bool, out: Path | None, tag: str = "",
        threads: int | None = None) -> dict:
    env = dict(os.environ, GENLIB_PROFILE=profile, GENLIB_STATIC="1", MPLBACKEND="Agg", PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    env["GENLIB_CACHE"] = cache or tempfile.mkdtemp(prefix="genlib-cold-cache-")
    if threads is not None and "OMP_NUM_THREADS" not in os.environ:
        # side by side, each chapter gets its share of the cores: oversubscribed torch threads made
        # a ci rehearsal 2 at a time on 2 cores several times slower than one after the other
        env["OMP_NUM_THREADS"] = str(threads)
    if record:
        env["GENLIB_RECORD"] = "1"
    before = {p: p.stat().st_mtime for p in (CHAPTERS / "records").rglob("*.json")}  # verdicts/ too
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, __file__, "--_child", str(md)], env=env, cwd=md.parent,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    cells, checks, verdicts, log = [], [], [], []
    for line in proc.stdout:
        if line.startswith("@@cell "):
            cell = json.loads(line[7:])
            cells.append(cell)
            if cell["s"] >= 1.0:
                print(f"{tag}  cell {cell['cell']:>2}: {cell['s']:7.1f} s  {cell['line']}", flush=True)
            continue
        log.append(line)
        if line.startswith(("PASS:", "FAIL:", "VERDICT")):
            (verdicts if line.startswith("VERDICT") else checks).append(line.rstrip())
            print(f"{tag}  " + line.rstrip(), flush=True)
        elif "Error" in line or "Traceback" in line or line.startswith(("  File", "    ")):
            print(f"{tag}  ! " + line.rstrip(), flush=True)
    rc = proc.wait()
    total = time.perf_counter() - start
    mine = f"{record_id(md)}--"  # chapters running beside this one write their own records
    written = [p for p in (CHAPTERS / "records").rglob(f"{mine}*.json") if before.get(p) != p.stat().st_mtime]
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{md.stem}--{profile}.log").write_text("".join(log))
        for p in written:  # a verdict keeps its folder: out/verdicts/<chapter>--<key>--<profile>.json
            dest = out / p.relative_to(CHAPTERS / "records")
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(p, dest)
    budget = BUDGET_S.get(profile)
    verdict = "" if budget is None else f" (budget {budget} s: {'within' if total <= budget else 'OVER'})"
    failed = "" if rc == 0 else ", STOPPED (a failed invariant or an error: see the lines marked !)"
    print(f"{tag}{md.stem} [{profile}]: rc={rc}, {total:.0f} s{verdict}, {len(checks)} invariants held{failed}, "
          f"{len(verdicts)} verdicts, records written: {[str(p.relative_to(CHAPTERS / 'records')) for p in written]}", flush=True)
    return {"chapter": md.stem, "profile": profile, "rc": rc, "seconds": round(total, 1), "cells": cells,
            "checks": checks, "verdicts": verdicts, "records": [str(p.relative_to(CHAPTERS / "records")) for p in written]}


def main(argv: list[str]) -> int:
    if argv[:1] == ["--_child"]:
        _child(Path(argv[1]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("chapters", nargs="+", help="chapter files or name prefixes (07, appD, 03_vae)")
    parser.add_argument("--profile", default=os.environ.get("GENLIB_PROFILE", "cpu"), choices=sorted(BUDGET_S))
    parser.add_argument("--cache", help="model cache directory to use (default: a fresh, empty one per chapter)")
    parser.add_argument("--record", action="store_true", help="write reproduction records (GENLIB_RECORD=1)")
    parser.add_argument("--out", type=Path, help="also copy written records and a timing JSON here")
    parser.add_argument("--jobs", type=int, default=1,
                        help="chapters run side by side (each its own process); with --cache they share "
                             "one model cache, and a model two chapters want is trained once (genlib.zoo_lock)")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")
    mds = [find_chapter(c) for c in args.chapters]
    start = time.perf_counter()
    if args.jobs == 1:
        results = [run(md, args.profile, args.cache, args.record, args.out) for md in mds]
    else:  # in the given order: put the chapters whose models others reuse first
        with ThreadPoolExecutor(args.jobs) as pool:
            share = max(1, (os.cpu_count() or 1) // args.jobs)
            results = list(pool.map(lambda md: run(md, args.profile, args.cache, args.record, args.out,
                                                   tag=f"[{record_id(md)}] ", threads=share), mds))
    wall = time.perf_counter() - start
    print(f"{len(mds)} chapter(s), {args.jobs} at a time: {wall:.0f} s wall, "
          f"{sum(r['seconds'] for r in results):.0f} s summed over chapters", flush=True)
    if args.out is not None:
        (args.out / f"chapter-times-{args.profile}.json").write_text(
            json.dumps({"jobs": args.jobs, "wall_s": round(wall, 1), "chapters": results}, indent=1))
    return max(r["rc"] != 0 for r in results)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

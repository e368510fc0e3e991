"""Run chapters on the CPU as if their models lived on a GPU, to find device mix-ups without one.

    python tests/run_fake_cuda.py chapters/07_ddpm.md chapters/12_video_ldm.md
    GENLIB_PROFILE=cpu python tests/run_fake_cuda.py chapters/14_make_a_video.md
    python tests/run_fake_cuda.py --gpu-rehearsal chapters/*.md   # gpu sizes, 2 training steps

Each chapter runs in a process of its own under `tests/fake_cuda.py` (the ``ci`` profile unless
``GENLIB_PROFILE`` says otherwise, the Triton kernels off, one thread, the model cache in
``GENLIB_CACHE`` or a fresh temporary folder). A cell that fails prints its error and the lines of
this repository that led to it; the run goes on with the next cell. At the end, the read-backs from
the "GPU" that happened at least 20 times at one line. Exit status: the number of chapters with a
failing cell. Use it before a GPU session, on every chapter whose code changed.

``--gpu-rehearsal`` runs the ``gpu`` profile's code paths (its model and batch sizes) with every
training loop capped at 2 steps (``GENLIB_MAX_STEPS=2``, unless set). The models are then untrained,
so a failed invariant (a quality precondition such as "the loss fell") is expected and counted
apart; only other errors (a device mix-up, a shape the gpu sizes break) count as failures.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def code_cells(md: Path) -> list[tuple[int, str]]:
    """The code cells of a MyST notebook: (first line number, source with option lines blanked)."""
    cells, current, start = [], None, 0
    for number, line in enumerate(md.read_text().split("\n"), 1):
        if line.startswith("```{code-cell}"):
            current, start = [], number + 1
        elif current is not None and line.startswith("```"):
            cells.append((start, "\n".join(current)))
            current = None
        elif current is not None:
            current.append("" if re.match(r"^:[\w-]+:", line) else line)  # keep the line numbers
    return cells


def run_one(md: Path) -> int:
    """Run one chapter under the fake device in this process; returns the number of failing cells."""
    sys.path.insert(0, str(ROOT / "tests"))
    import fake_cuda
    import matplotlib
    import torch

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    torch.set_num_threads(1)
    fake_cuda.install()
    namespace = {"__name__": "__main__"}
    from genlib import config
    from genlib.viz import InvariantError

    failures, invariants, start_time = 0, 0, time.time()
    for start, source in code_cells(md):
        try:
            exec(compile("\n" * (start - 1) + source, str(md.resolve()), "exec"), namespace)
        except Exception as error:
            if isinstance(error, InvariantError) and config.max_steps() is not None:
                invariants += 1  # untrained models: a quality precondition may fail
                print(f"invariant failed at line {start} (expected with {config.max_steps()} training steps): "
                      f"{str(error)[:200]}", flush=True)
                plt.close("all")
                continue
            failures += 1
            frames = traceback.extract_tb(error.__traceback__)
            where = [f"{f.filename}:{f.lineno}" for f in frames if str(ROOT) in f.filename and "fake_cuda" not in f.filename]
            print(f"FAILED cell at line {start}: {type(error).__name__}: {str(error)[:400]}\n"
                  f"    via {' <- '.join(reversed(where[-4:]))}", flush=True)
        plt.close("all")
    capped = f", {invariants} invariants failed under the step cap" if config.max_steps() else ""
    print(f"{md}: {failures} failing cells{capped}, {time.time() - start_time:.0f} s", flush=True)
    fake_cuda.report()
    return failures


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    if argv[0] == "--one":
        return min(run_one(Path(argv[1])), 1)
    rehearsal = argv[0] == "--gpu-rehearsal"
    argv = argv[1:] if rehearsal else argv
    env = dict(os.environ, GENLIB_STATIC="1", MPLBACKEND="Agg", GENLIB_KERNELS="torch", OMP_NUM_THREADS="1",
               PYTHONPATH=str(ROOT))
    if rehearsal:
        env["GENLIB_PROFILE"] = "gpu"
        env.setdefault("GENLIB_MAX_STEPS", "2")
    env.setdefault("GENLIB_PROFILE", "ci")
    env.setdefault("GENLIB_CACHE", tempfile.mkdtemp(prefix="fake-cuda-cache-"))
    bad = 0
    for name in argv:
        md = Path(name)
        if not md.is_file():
            print(f"no such chapter: {name}")
            bad += 1
            continue
        bad += subprocess.run([sys.executable, __file__, "--one", str(md)], env=env, cwd=ROOT).returncode != 0
    return bad


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

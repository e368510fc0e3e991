"""Throughput of the shapes world on ONE CPU core: images/s of ``shapes.sample`` and clips/s of
``moving.sample``.

    python benchmarks/shapes_throughput.py [--repeats 5] [--min-rate 5000] [--cpu N] [--quick]

The training loops draw fresh scenes every step (``shapes.stream``), so the world must render far
faster than a small model trains. The check: at 32x32, in batches of 256 and of 5000,
``shapes.sample`` must make at least ``--min-rate`` images/s (default 5,000) on one core, best of
``--repeats`` runs; the script exits 1 otherwise. The 16 and 64 px sizes are reported too, and
``moving.sample`` clips/s (8 frames, 32 px).

One core means: the BLAS/OpenMP pools are limited to one thread through their environment
variables *before* NumPy and torch are imported (this module sets them first thing, so run it as a
script, not from a process that has already imported NumPy), ``torch.set_num_threads(1)``, and the
process is pinned to one CPU with ``os.sched_setaffinity`` (Linux; ``--cpu`` picks which, default
the last one allowed). Timings on a machine shared with other work are noisy: the load average is
printed before and after, and best-of-N takes the least-disturbed run.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from genlib.data import moving, shapes  # noqa: E402


def pin(cpu: int | None) -> str:
    if not hasattr(os, "sched_setaffinity"):
        return "not pinned (no sched_setaffinity)"
    allowed = sorted(os.sched_getaffinity(0))
    core = allowed[-1] if cpu is None else cpu
    os.sched_setaffinity(0, {core})
    return f"pinned to CPU {core} of {len(allowed)} allowed"


def best_rate(fn, n: int, repeats: int) -> tuple[float, float]:
    """Best and median items/s of ``fn(seed)`` making ``n`` items, after one warm-up call."""
    fn(10_000)
    times = []
    for r in range(repeats):
        t0 = time.perf_counter()
        fn(r)
        times.append(time.perf_counter() - t0)
    return n / min(times), n / float(np.median(times))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per case (best is reported)")
    parser.add_argument("--min-rate", type=float, default=5000.0, help="required images/s at 32x32 (both batch sizes)")
    parser.add_argument("--cpu", type=int, default=None, help="CPU to pin to (default: last allowed)")
    parser.add_argument("--quick", action="store_true", help="smaller batches, for a smoke test")
    args = parser.parse_args(argv)

    torch.set_num_threads(1)
    where = pin(args.cpu)
    load_before = os.getloadavg()
    print(f"shapes throughput, one core: {where}; torch threads {torch.get_num_threads()}, "
          f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}")
    print(f"python {platform.python_version()}, numpy {np.__version__}, torch {torch.__version__}, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs on the machine")
    print(f"load average before: {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}")
    print()

    batches = (64, 500) if args.quick else (256, 5000)
    rows = []
    for size in (32, 16, 64):
        for n in batches:
            best, median = best_rate(lambda seed: shapes.sample(n, size=size, seed=seed), n, args.repeats)
            rows.append((f"shapes.sample {size}x{size}", n, "images/s", best, median))
    clips = (32, 128) if args.quick else (256, 1000)
    for n in clips:
        best, median = best_rate(lambda seed: moving.sample(n, frames=8, size=32, seed=seed), n, args.repeats)
        rows.append(("moving.sample 8x32x32", n, "clips/s", best, median))

    print(f"{'case':<24}{'batch':>7}  {'best':>10}  {'median':>10}  unit")
    for name, n, unit, best, median in rows:
        print(f"{name:<24}{n:>7}  {best:>10,.0f}  {median:>10,.0f}  {unit}")
    load_after = os.getloadavg()
    print(f"\nload average after: {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}")

    rate = min(best for name, _, _, best, _ in rows if name == "shapes.sample 32x32")
    ok = rate >= args.min_rate
    print(f"check: 32x32, both batch sizes, best-of-{args.repeats} >= {args.min_rate:,.0f} images/s "
          f"(slower batch: {rate:,.0f}): {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

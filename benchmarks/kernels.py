"""Time genlib's Triton kernels against PyTorch on one GPU, check them, and record the numbers.

    python benchmarks/kernels.py                  # the full run, 2 to 3 minutes on an H100 (autotuning included)
    python benchmarks/kernels.py --quick          # one or two shapes per kernel
    python benchmarks/kernels.py --dry-run        # CPU, tiny shapes, Triton interpreter: the code paths

First the card's peaks (copy bandwidth of a 1 GiB tensor, bf16 matmul rate at 8192^3). Then, per
kernel: a correctness check against its reference (printed as an error and OK/BAD), and per shape
the median time of the Triton kernel and of each PyTorch baseline
(``triton.testing.do_bench(fn, warmup=25, rep=100, return_mode="median")``) with the achieved
TFLOP/s or GB/s and its fraction of the peak. Last, the targets as PASS/MISS lines, the ratios
without a target, the variants and the provisional defaults with this run's evidence. Each
measurement is wrapped so that a failure is recorded and the run goes on. The raw records go to
``--out`` as JSON (default ``benchmarks/results/kernels-<card>-<date>.json``).

A speedup is ``baseline time / Triton time``: above 1 the Triton kernel is faster. Every row carries
the precision it computes at (bf16, fp32, tf32), printed beside each ratio, and a ratio is only taken
between equal precisions: the VQ kernel multiplies fp32 inputs in TF32 by default, so its cdist and
torch.compile baselines are timed with PyTorch's fp32 matmuls in TF32 too, and its exact mode
(``triton-ieee``) against the same baselines at full fp32 (the equal-precision rows, no target).
torch.compile baselines are compiled afresh for each shape (static shapes) and warmed before timing;
temporal attention at t <= 64 also has a compiled naive attention, softmax(q k^T / sqrt(d)) v.

With ``--cuda-graph`` every call is timed both ways, launched one by one from Python and replayed
from a CUDA graph (the GPU's work alone), and the table prints the two times and the two ratios side
by side; targets are judged on the graph times.

Provisional: the one-pass GroupNorm+SiLU kernel became the default at the VAE shapes on the evidence
of one GPU run (H200, 2026-11-27). Each run prints, at the end, whether its own VAE rows agree (the
default at least as fast as the two-launch kernel it replaced); it stays provisional until a second
GPU run confirms it.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import math
import os
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # genlib from this checkout, installed or not
# --dry-run runs the Triton kernels in the interpreter, which must be chosen before triton loads.
if "--dry-run" in sys.argv:
    os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ["GENLIB_KERNELS"] = "triton"  # the public functions must run the kernels being timed

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import genlib.kernels as K  # noqa: E402
from genlib.kernels import costs  # noqa: E402

if "--dry-run" in sys.argv or torch.cuda.is_available():
    from genlib.kernels import attention_tma, attention_triton, groupnorm_triton  # noqa: E402  (they import triton)

RECORDS: list[dict] = []  # everything measured, as written to the JSON file
EXPERIMENTS = False  # --experiments: also time the variants that lost before


def costed(cost: tuple[float, float]) -> dict[str, float]:
    """``Bench.case``'s keyword arguments from a ``genlib.kernels.costs`` (flops, bytes) pair."""
    return dict(zip(("flops", "nbytes"), cost))


def error_text(error: Exception) -> str:
    return f"{type(error).__name__}: {error}"[:500]


# --------------------------------------------------------------------------------------------
# Measuring


# PyTorch's fp32 matmul setting for each precision label a row can carry; rows labelled otherwise
# (bf16, fp16) do not depend on it.
MATMUL_PRECISION = {"tf32": "high", "fp32": "highest"}


@contextlib.contextmanager
def matmul_precision(label: str):
    """Run PyTorch's fp32 matrix products (cuBLAS, the matmul inside ``torch.cdist``, inductor's
    matmuls) at the precision ``label`` ("tf32" or "fp32"), then restore both settings.

    ``torch.set_float32_matmul_precision`` and ``torch.backends.cuda.matmul.allow_tf32`` are set
    together, since older and newer PyTorch read one or the other. torch.compile guards on the
    setting, so a function compiled under one setting is compiled again under the other.
    """
    saved = torch.get_float32_matmul_precision(), torch.backends.cuda.matmul.allow_tf32
    torch.set_float32_matmul_precision(MATMUL_PRECISION[label])
    torch.backends.cuda.matmul.allow_tf32 = label == "tf32"
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(saved[0])
        torch.backends.cuda.matmul.allow_tf32 = saved[1]


class Times(dict):
    """``{impl: ms}`` of one case (the graph time where one was taken, else the launched time), with
    ``launched`` and ``graph`` (``{impl: ms}`` each), ``precision`` (``{impl: label}``) and
    ``against`` (``{impl: the Triton implementation its ratio is taken against}``) beside it."""

    def __init__(self):
        super().__init__()
        self.launched: dict[str, float] = {}
        self.graph: dict[str, float] = {}
        self.precision: dict[str, str] = {}
        self.against: dict[str, str | None] = {}


def precision_text(times: Times, impl: str, baseline: str) -> str:
    """'tf32 vs tf32': the precisions of a ratio's two sides; unequal ones are an error."""
    mine, theirs = times.precision.get(impl, "?"), times.precision.get(baseline, "?")
    if mine != theirs:
        raise ValueError(f"{impl} ({mine}) against {baseline} ({theirs}): unequal precisions")
    return f"{mine} vs {theirs}"


def speedups(times: Times, impl: str, baseline: str) -> dict[str, float]:
    """Baseline time / ``impl`` time: ``speedup_launched`` and ``speedup_graph`` where both sides
    were timed that way, and ``speedup`` (the graph ratio where there is one, else the launched)."""
    out = {}
    for way, ms in (("launched", times.launched), ("graph", times.graph)):
        if impl in ms and baseline in ms:
            out[f"speedup_{way}"] = ms[baseline] / ms[impl]
    if out:  # the graph times where both sides have one, never a graph time over a launched one
        out["speedup"] = out.get("speedup_graph", out["speedup_launched"])
    return out


class Bench:
    """Timing on one device, the card's peaks, and the PASS/MISS targets collected on the way.

    With ``graph`` (``--cuda-graph``) every call is timed twice, launched one by one from Python and
    replayed from a CUDA graph, and each row prints both times and both ratios; targets use the
    graph time. On the CPU (dry run) the graph column is printed empty ("n/a"): there is no graph.
    """

    def __init__(self, device: torch.device, dry_run: bool, graph: bool = False):
        self.device = device
        self.dry_run = dry_run
        self.graph_columns = graph  # print the launched and graph columns side by side
        self.graph = graph and device.type == "cuda"  # time inside CUDA graphs: GPU time only
        self.copy_gbps = math.nan
        self.matmul_tflops = math.nan
        self.targets: list[dict] = []
        self.variants: list[dict] = []
        self.comparisons: list[dict] = []
        self.provisional: list[dict] = []
        self.header_for = ""

    def launched_ms(self, fn) -> float:
        """Median milliseconds of ``fn()`` launched one by one; on the CPU (dry run) a wall-clock
        median of 3."""
        fn()  # warm: compiles, autotunes, allocates
        fn()
        if self.device.type == "cuda":
            import triton.testing

            torch.cuda.synchronize()
            return triton.testing.do_bench(fn, warmup=25, rep=100, return_mode="median")
        times = []
        for _ in range(3):
            start = time.perf_counter()
            fn()
            times.append((time.perf_counter() - start) * 1e3)
        return statistics.median(times)

    def graph_ms(self, fn) -> float:
        """Median milliseconds of ``fn()`` replayed from a CUDA graph: back to back, the GPU's work
        alone, where launched one by one from Python a small kernel can wait on the CPU."""
        import triton.testing

        return triton.testing.do_bench_cudagraph(fn, rep=100, return_mode="median")

    def time_ms(self, fn) -> float:
        """Median milliseconds of ``fn()`` launched (peaks and anything outside ``case``)."""
        return self.launched_ms(fn)

    def time_both(self, fn) -> tuple[float, float | None, str]:
        """(launched ms, graph ms or None, how the graph time went)."""
        launched = self.launched_ms(fn)
        if not self.graph:
            return launched, None, "no CUDA graph on the CPU" if self.graph_columns else "launched"
        try:
            return launched, self.graph_ms(fn), "cuda-graph"
        except Exception as error:  # not capturable: keep the launched time, and say so
            if self.device.type == "cuda":
                torch.cuda.synchronize()
            return launched, None, f"graph capture failed: {error_text(error)[:120]}"

    def measure_peaks(self) -> None:
        on_gpu = self.device.type == "cuda"
        src = torch.ones(1 << (28 if on_gpu else 20), dtype=torch.float32, device=self.device)
        dst = torch.empty_like(src)
        self.copy_gbps = 2 * src.nbytes / self.time_ms(lambda: dst.copy_(src)) / 1e6  # read + write
        size = 8192 if on_gpu else 256
        a, b = (torch.randn(size, size, dtype=torch.bfloat16, device=self.device) for _ in range(2))
        self.matmul_tflops = 2 * size**3 / self.time_ms(lambda: a @ b) / 1e9
        print(f"peaks: copy {self.copy_gbps:.0f} GB/s, "
              f"bf16 matmul ({size}^3) {self.matmul_tflops:.0f} TFLOP/s")
        RECORDS.append(dict(kind="peak", copy_gbps=self.copy_gbps, matmul_tflops=self.matmul_tflops))

    def print_header(self, kernel: str) -> None:
        """The column names, once per kernel: one time column, or launched and graph side by side."""
        if self.header_for == kernel:
            return
        self.header_for = kernel
        timing = (f"{'launched':>12s} {'cuda-graph':>12s}" if self.graph_columns else f"{'time':>12s}")
        ratio = ("kernel / precisions / speedup launched, graph" if self.graph_columns
                 else "kernel / precisions / speedup")
        print(f"{'kernel':10s} {'case':38s} {'impl':22s} {'prec':5s} {timing}  "
              f"{'rate (of the main time)':36s} {ratio}")

    def case(self, kernel: str, case: str, impls: dict, *, flops: float = 0.0, nbytes: float = 0.0,
             rate: str = "", contexts: dict | None = None, precision: str = "",
             precisions: dict | None = None, against: dict | None = None) -> Times:
        """Time every implementation of one case, one printed line each; returns their ``Times``.

        ``impls`` maps a name to a zero-argument callable, ``"triton"`` first. ``contexts`` gives a
        context-manager factory for some of them (the SDPA backend choice). ``precision`` labels
        the arithmetic of every implementation ("bf16", "fp32", "tf32"), ``precisions`` overrides
        it per implementation; a row labelled "tf32" or "fp32" runs with PyTorch's fp32 matmul
        setting to match (``matmul_precision``), so a PyTorch baseline computes at the precision
        printed beside it, not at the global default. Each row's ratio is "baseline time / kernel
        time" against the Triton implementation ``against`` names for it (default ``"triton"``;
        ``None``: no ratio), and both sides must carry the same precision label (else ValueError,
        before anything is timed). Failures are printed, recorded and left out of the result.
        ``flops`` and ``nbytes`` (genlib.kernels.costs) are recorded with every time; ``rate``
        ("flops" or "bytes", default: flops when given) picks the one printed.
        """
        rate = rate or ("flops" if flops else "bytes")
        times = Times()
        for name in impls:
            times.precision[name] = (precisions or {}).get(name, precision or "?")
            times.against[name] = (against or {}).get(name, None if name == "triton" else "triton")
            if times.against[name] is not None:
                precision_text(times, times.against[name], name)  # refuses unequal precisions
        self.print_header(kernel)
        for name, fn in impls.items():
            label_ = times.precision[name]
            record = dict(kind="time", kernel=kernel, case=case, impl=name, flops=flops, bytes=nbytes,
                          precision=label_, against=times.against[name])
            RECORDS.append(record)
            try:
                with contextlib.ExitStack() as stack:
                    if label_ in MATMUL_PRECISION:
                        stack.enter_context(matmul_precision(label_))
                        record["matmul_allow_tf32"] = torch.backends.cuda.matmul.allow_tf32
                    if contexts and name in contexts:
                        stack.enter_context(contexts[name]())
                    launched, graph, timing = self.time_both(fn)
            except Exception as error:  # one failure must not end the run
                record["error"] = error_text(error)
                print(f"{kernel:10s} {case:38s} {name:22s} {label_:5s}   FAILED  {record['error'][:150]}")
                continue
            ms = graph if graph is not None else launched
            times[name] = record["ms"] = ms
            times.launched[name] = record["ms_launched"] = launched
            if graph is not None:
                times.graph[name] = record["ms_graph"] = graph
            record["timing"] = timing
            if rate == "flops":
                record["tflops"] = flops / ms / 1e9
                fraction = record["tflops"] / self.matmul_tflops
                achieved = f"{record['tflops']:7.1f} TFLOP/s ({fraction:4.0%} of matmul)"
            else:
                record["gbps"] = nbytes / ms / 1e6
                fraction = record["gbps"] / self.copy_gbps
                achieved = f"{record['gbps']:7.1f} GB/s    ({fraction:4.0%} of copy)"
            versus = ""
            kernel_impl = times.against[name]
            if kernel_impl is not None and kernel_impl in times:
                found = speedups(times, kernel_impl, name)
                record["speedup_of_triton"] = found["speedup"]
                record.update({f"{key}_of_triton": value for key, value in found.items() if key != "speedup"})
                pair = precision_text(times, kernel_impl, name)
                if self.graph_columns:
                    graph_ratio = (f"{found['speedup_graph']:5.2f}x" if "speedup_graph" in found else "  n/a")
                    versus = (f"   {kernel_impl} is {found['speedup_launched']:5.2f}x, {graph_ratio} this"
                              f" [{pair}]")
                else:
                    versus = f"   {kernel_impl} is {found['speedup']:5.2f}x this [{pair}]"
            if self.graph_columns:
                graph_text = f"{graph:9.4f} ms" if graph is not None else f"{'n/a':>12s}"
                timed = f"{launched:9.4f} ms {graph_text}"
                if timing not in ("cuda-graph", "no CUDA graph on the CPU"):
                    versus += f"  [{timing}]"
            else:
                timed = f"{launched:9.4f} ms"
            print(f"{kernel:10s} {case:38s} {name:22s} {label_:5s} {timed}  {achieved}{versus}")
        return times

    def target(self, description: str, times: Times, baseline: str, minimum: float,
               kernel: str = "triton") -> None:
        """Record the target '``kernel`` is at least ``minimum`` times as fast as ``baseline``',
        at one precision (``baseline`` must carry ``kernel``'s precision label)."""
        pair = precision_text(times, kernel, baseline)
        record = dict(kind="target", target=f"{description} [{pair}]", baseline=baseline,
                      kernel=kernel, precision=pair, minimum=minimum)
        record.update(speedups(times, kernel, baseline))
        if "speedup" in record:
            record["passed"] = record["speedup"] >= minimum
        else:
            record["passed"] = False
            record["error"] = "a timing failed"
        self.targets.append(record)
        RECORDS.append(record)

    def variant(self, description: str, times: Times, impl: str, baseline: str) -> None:
        """Record how a variant that is not the default (``impl``) compares with ``baseline``: the
        numbers that decide whether it should become the default."""
        record = dict(kind="variant", variant=description, impl=impl, baseline=baseline)
        record.update(speedups(times, impl, baseline))
        if "speedup" in record:
            record["versus_default"] = speedups(times, impl, "triton").get("speedup", math.nan)
        self.variants.append(record)
        RECORDS.append(record)

    def comparison(self, description: str, times: Times, impl: str, baseline: str) -> None:
        """Record a ratio without a target ('``impl`` is so many times as fast as ``baseline``', at
        one precision): a baseline added to show where a kernel stands, not to pass or miss."""
        pair = precision_text(times, impl, baseline)
        record = dict(kind="comparison", comparison=f"{description} [{pair}]", impl=impl,
                      baseline=baseline, precision=pair)
        record.update(speedups(times, impl, baseline))
        self.comparisons.append(record)
        RECORDS.append(record)

    def provisional_default(self, description: str, times: Times, rival: str, baseline: str, *,
                            default_here: bool) -> None:
        """Record this run's evidence on a default chosen on one run (``"triton"``): whether it is
        at least as fast as ``rival``, the implementation it replaced; ``baseline`` for scale."""
        record = dict(kind="provisional", default=description, rival=rival, baseline=baseline,
                      status="provisional")
        if not default_here:
            record["evidence"] = f"not the default on {self.device.type} (two launches run here): no evidence"
        elif "speedup" not in speedups(times, "triton", rival):
            record["evidence"] = "a timing failed: no evidence"
        else:
            versus_rival = speedups(times, "triton", rival)
            versus_baseline = speedups(times, "triton", baseline).get("speedup", math.nan)
            record["speedup_over_rival"] = versus_rival["speedup"]
            record["agrees"] = versus_rival["speedup"] >= 1.0
            record["evidence"] = (
                f"this run: {rival} time / default time {versus_rival['speedup']:.2f}x, {baseline} "
                f"{versus_baseline:.2f}x [{precision_text(times, 'triton', rival)}]: "
                f"{'agrees' if record['agrees'] else 'DISAGREES'} (one GPU run before this one)")
        self.provisional.append(record)
        RECORDS.append(record)

    def report_targets(self) -> None:
        both = "; launched, cuda-graph" if self.graph_columns else ""
        print(f"\n== targets (speedup = baseline time / triton time, at the precisions in brackets{both})")
        for t in self.targets:
            verdict = "PASS" if t["passed"] else "MISS"
            print(f"{verdict}  {t['target']:76s} {self.speedup_text(t)}")
        if self.comparisons:
            print("\n== comparisons without a target (speedup = baseline time / kernel time, equal precisions)")
        for c in self.comparisons:
            print(f"      {c['comparison']:76s} {self.speedup_text(c)}")
        if self.variants:
            print("\n== variants that are not the default (speedup = baseline time / variant time)")
        for v in self.variants:
            if "speedup" in v:
                print(f"      {v['variant']:64s} {self.speedup_text(v)}  "
                      f"({v['versus_default']:.2f}x the default kernel)")
            else:
                print(f"      {v['variant']:64s} (not run: not eligible here, or a timing failed)")
        if self.provisional:
            print("\n== provisional defaults (kept until a second GPU run confirms them)")
        for p in self.provisional:
            print(f"PROVISIONAL  {p['default']}: {p['evidence']}")

    def speedup_text(self, record: dict) -> str:
        if "speedup" not in record:
            return "(a timing failed)"
        if not self.graph_columns:
            return f"{record['speedup']:6.2f}x"
        graph = f"{record['speedup_graph']:6.2f}x" if "speedup_graph" in record else "   n/a"
        return f"{record.get('speedup_launched', math.nan):6.2f}x, {graph}"

    def compiled(self, fn):
        """A fresh ``torch.compile`` of ``fn`` (one per shape, static shapes); the dry run only traces."""
        return torch.compile(fn, dynamic=False, backend="eager" if self.dry_run else "inductor")


def check(kernel: str, case: str, errors_fn, tolerance: float) -> None:
    """Print and record ``errors_fn()``: a dict of named errors whose first entry must be <= tolerance."""
    record = dict(kind="check", kernel=kernel, case=case, tolerance=tolerance)
    RECORDS.append(record)
    try:
        errors = {name: float(value) for name, value in errors_fn().items()}
    except Exception as error:
        record["error"] = error_text(error)
        print(f"check {kernel:10s} {case:44s} FAILED {record['error'][:200]}")
        return
    record.update(errors)
    record["ok"] = next(iter(errors.values())) <= tolerance
    detail = "  ".join(f"{name}={value:.3g}" for name, value in errors.items())
    print(f"check {kernel:10s} {case:44s} {detail}  (tol {tolerance:g})  {'OK' if record['ok'] else 'BAD'}")


def max_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / (1 + |b|): absolute near zero, relative for large values."""
    a, b = a.float(), b.float()
    return ((a - b).abs() / (1 + b.abs())).max().item()


def randn(*shape, dtype=torch.float32, device="cpu", seed=0):
    gen = torch.Generator(device=device).manual_seed(seed)
    return torch.randn(*shape, generator=gen, dtype=torch.float32, device=device).to(dtype)


def short(dtype) -> str:
    """The precision label of a dtype, printed beside every ratio: bf16, fp16 or fp32."""
    return {torch.bfloat16: "bf16", torch.float16: "fp16", torch.float32: "fp32"}[dtype]


def label(shape, dtype) -> str:
    return f"{'x'.join(map(str, shape))} {str(dtype).removeprefix('torch.')}"


# --------------------------------------------------------------------------------------------
# Shapes


def shapes(quick: bool, dry_run: bool) -> dict:
    """Per kernel: attention (b, h, n, d, dtype); temporal ((b h), t, d); vq (n, k, d);
    groupnorm (shape, dtype, kind); sampler (shape)."""
    if dry_run:
        return dict(
            attention=[(1, 2, 128, 64, torch.bfloat16)],  # n = 128: the TMA kernel's smallest
            temporal=[(32, 16, 64)],
            vq=[(256, 64, 16)],
            groupnorm=[((2, 64, 4, 4), torch.float32, "unet"), ((1, 32, 8, 8), torch.bfloat16, "vae")],
            sampler=[(2, 3, 8, 8)],
        )
    dtypes = (torch.bfloat16, torch.float32)
    sizes = dict(
        attention=[(4, 16, 4096, 64, torch.bfloat16), (4, 16, 4096, 128, torch.bfloat16)],
        temporal=[(16384, 16, 64), (16384, 32, 64), (65536, 16, 64), (65536, 32, 64)],
        vq=[(262144, 1024, 64)],
        groupnorm=[((64, 128, 32, 32), dt, "unet") for dt in dtypes]
        + [((64, 256, 16, 16), dt, "unet") for dt in dtypes]
        + [((1, 256, 256, 256), dt, "vae") for dt in dtypes],
        sampler=[(64, 3, 64, 64), (16, 4, 128, 128)],
    )
    if quick:
        sizes = {name: cases[:1] for name, cases in sizes.items()}
        sizes["groupnorm"].append(((1, 256, 256, 256), torch.bfloat16, "vae"))
    return sizes


# --------------------------------------------------------------------------------------------
# Attention


def tuned(what: str, autotuner) -> None:
    """Print and record the configs a triton.autotune picked (on the GPU), for the next tuning round."""
    for key, config in getattr(autotuner, "cache", {}).items():
        if (what, key) not in PRINTED:
            PRINTED.add((what, key))
            print(f"           tuned {what}: key {key} -> {config}")
            RECORDS.append(dict(kind="tuned", kernel=what, key=str(key), config=str(config)))


PRINTED: set = set()


def eager_attention(q, k, v):
    """softmax(q k^T / sqrt(d)) v as three PyTorch calls, in the inputs' dtype."""
    s = (q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5
    return torch.softmax(s, dim=-1) @ v


def sdpa_flash():
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel(SDPBackend.FLASH_ATTENTION)


def bench_attention(bench: Bench, sizes: dict) -> None:
    device, on_gpu = bench.device, bench.device.type == "cuda"
    print("\n== attention: b h n d, fused online softmax vs SDPA (default = cuDNN on Hopper) and eager")
    ragged = [
        ((2, 4, 1000, 1000, 80), torch.bfloat16, True, 2e-2),
        ((2, 4, 300, 777, 128), torch.float16, False, 2e-3),
        ((1, 2, 500, 500, 96), torch.float32, True, 1e-4),
    ] if on_gpu else [((1, 1, 40, 70, 40), torch.float16, True, 2e-3)]
    for (b, h, n, m, d), dtype, causal, tol in ragged:
        q = randn(b, h, n, d, dtype=dtype, device=device, seed=3)
        k, v = (randn(b, h, m, d, dtype=dtype, device=device, seed=s) for s in (4, 5))
        ref = K.attention_reference(q.float(), k.float(), v.float(), causal=causal)
        check("attention", f"{b}x{h}x{n}x{m}x{d} causal={causal} {str(dtype)[6:]}",
              lambda: {"max_err": max_err(K.attention(q, k, v, causal=causal), ref)}, tol)

    for b, h, n, d, dtype in sizes["attention"]:
        q, k, v = (randn(b, h, n, d, dtype=dtype, device=device, seed=s) for s in range(3))
        # Checked on the timed shape: the autotuner keys on (n, m, d), so it tunes on the real batch.
        ref = K.attention_reference(q.float(), k.float(), v.float())
        check("attention", label((b, h, n, d), dtype),
              lambda: {"max_err": max_err(K.attention(q, k, v), ref)}, 2e-2)
        del ref
        impls = {"triton": lambda: K.attention(q, k, v)}  # the TMA kernel at d = 128 on a GPU
        impls["triton-pointer"] = lambda: attention_triton.attention_triton(q, k, v, tma=False)
        if attention_tma.tma_eligible(q, k, v):
            out = attention_triton.attention_triton(q, k, v, tma=True)
            check("attention", f"{label((b, h, n, d), dtype)} TMA kernel",
                  lambda: {"max_err": max_err(out, K.attention_reference(q.float(), k.float(), v.float()))}, 2e-2)
            impls["triton-tma"] = lambda: attention_triton.attention_triton(q, k, v, tma=True)
            if on_gpu and EXPERIMENTS:  # the TMA loop warp-specialised by triton (H200: no faster)
                def tma_ws():
                    return attention_triton.attention_triton(q, k, v, tma=True, warp_specialize=True)

                check("attention", f"{label((b, h, n, d), dtype)} TMA warp-specialised",
                      lambda: {"max_err": max_err(tma_ws(), K.attention_reference(q.float(), k.float(), v.float()))},
                      2e-2)
                impls["triton-tma-ws"] = tma_ws
        times = bench.case(
            "attention", f"b{b} h{h} n{n} d{d} {str(dtype)[6:]}",
            {
                **impls,
                "sdpa-default": lambda: F.scaled_dot_product_attention(q, k, v),
                "sdpa-flash": lambda: F.scaled_dot_product_attention(q, k, v),
                "eager": lambda: eager_attention(q, k, v),
            },
            **costed(costs.attention_cost(b, h, n, n, d, q.element_size())),
            contexts={"sdpa-flash": sdpa_flash},
            precision=short(dtype),
        )
        tuned(f"attention d={d}", attention_triton._attention_fwd_tuned)
        tuned(f"attention TMA d={d}", attention_tma._attention_fwd_tma_tuned)
        minimum = 0.85 if d <= 64 else 0.75
        bench.target(f"attention n={n} d={d} >= {minimum}x SDPA default", times, "sdpa-default", minimum)
        bench.target(f"attention n={n} d={d} >= 1.3x SDPA flash backend", times, "sdpa-flash", 1.3)
        bench.variant(f"attention n={n} d={d}: pointer kernel vs SDPA default", times, "triton-pointer",
                      "sdpa-default")
        bench.variant(f"attention n={n} d={d}: TMA kernel vs SDPA default", times, "triton-tma", "sdpa-default")
        if EXPERIMENTS:
            bench.variant(f"attention n={n} d={d}: TMA warp-specialised vs SDPA default", times, "triton-tma-ws",
                          "sdpa-default")
        del q, k, v

    for i, (bh, t, d) in enumerate(sizes["temporal"]):
        q, k, v = (randn(bh // 16, 16, t, d, dtype=torch.bfloat16, device=device, seed=s) for s in range(3))
        if i == 0:
            ref = K.attention_reference(q.float(), k.float(), v.float())
            check("attention", f"temporal {bh}x{t}x{d} bf16",
                  lambda: {"max_err": max_err(K.attention(q, k, v), ref)}, 2e-2)
            del ref
        # At t <= 64 the t x t scores are small enough for torch.compile to fuse the naive
        # softmax(q k^T / sqrt(d)) v into a few kernels: the baseline a user would try first.
        compiled_naive = {"compile-naive": lambda f=bench.compiled(eager_attention): f(q, k, v)} if t <= 64 else {}
        times = bench.case(
            "attention", f"temporal (b h)={bh} t{t} d{d} bf16",
            {
                "triton": lambda: K.attention(q, k, v),
                "sdpa-default": lambda: F.scaled_dot_product_attention(q, k, v),
                "eager": lambda: eager_attention(q, k, v),
                **compiled_naive,
            },
            **costed(costs.attention_cost(bh // 16, 16, t, t, d, q.element_size())),
            rate="bytes",  # t / 2 FLOP per byte: memory bound
            precision="bf16",
        )
        tuned(f"temporal t={t}", attention_triton._attention_fwd_short)
        bench.target(f"temporal attention (b h)={bh} t={t} >= 3x SDPA", times, "sdpa-default", 3.0)
        if compiled_naive:
            bench.comparison(f"temporal attention (b h)={bh} t={t} vs compiled naive attention", times,
                             "triton", "compile-naive")
        del q, k, v


# --------------------------------------------------------------------------------------------
# Vector quantisation


def matmul_argmin(z, codebook):
    """The VQ argmin as a user writes it: the n x k distance matrix, then argmin."""
    dist = z.pow(2).sum(1, keepdim=True) - 2 * z @ codebook.T + codebook.pow(2).sum(1)
    return dist.argmin(1)


def cdist_argmin(z, codebook):
    return torch.cdist(z, codebook).argmin(1)


def bench_vq(bench: Bench, sizes: dict) -> None:
    print("\n== vq: nearest code, n d x k d -> n; triton default tf32 (fp32 inputs), triton-ieee exact fp32")
    print("   every baseline is timed at its kernel's precision: the tf32 rows with PyTorch's fp32 matmuls")
    print("   in TF32 (set_float32_matmul_precision('high')) against triton, the fp32 rows at full fp32")
    print("   ('highest') against triton-ieee")
    for n, k, d in sizes["vq"]:
        z, codebook = randn(n, d, device=bench.device, seed=6), randn(k, d, device=bench.device, seed=7)
        ref_idx, ref_dist = K.vq_nearest_reference(z, codebook, return_distance=True)

        def errors(precision):
            """How much farther than the nearest code the kernel's pick is (relative; 0 where it
            agrees with the exact reference) and how often it disagrees."""
            idx = K.vq_nearest(z, codebook, input_precision=precision)
            chosen = (z - codebook[idx]).pow(2).sum(1)  # exact distance to the kernel's pick
            gap = ((chosen - ref_dist) / (1 + ref_dist)).max()
            return {"max_rel_gap": gap, "disagree_frac": (idx != ref_idx).float().mean()}

        def distance_error():
            _, dist = K.vq_nearest(z, codebook, return_distance=True, input_precision="ieee")
            return {"max_err": max_err(dist, ref_dist)}

        check("vq", f"{n}x{k}x{d} fp32 ieee", lambda: errors("ieee"), 1e-4)
        check("vq", f"{n}x{k}x{d} fp32 tf32", lambda: errors("tf32"), 1e-3)
        check("vq", f"{n}x{k}x{d} fp32 ieee distance", distance_error, 1e-4)
        del ref_idx, ref_dist
        # One compiled function per precision (torch.compile also guards on the TF32 setting).
        times = bench.case(
            "vq", f"n{n} k{k} d{d} fp32",
            {
                "triton": lambda: K.vq_nearest(z, codebook),
                "cdist+argmin-tf32": lambda: cdist_argmin(z, codebook),
                "compile-mm+argmin-tf32": lambda f=bench.compiled(matmul_argmin): f(z, codebook),
                "triton-ieee": lambda: K.vq_nearest(z, codebook, input_precision="ieee"),
                "cdist+argmin-fp32": lambda: cdist_argmin(z, codebook),
                "compile-mm+argmin-fp32": lambda f=bench.compiled(matmul_argmin): f(z, codebook),
            },
            **costed(costs.vq_cost(n, k, d, z.element_size())),
            rate="flops",
            precision="tf32",
            precisions={name: "fp32" for name in ("triton-ieee", "cdist+argmin-fp32", "compile-mm+argmin-fp32")},
            against={"triton-ieee": None, "cdist+argmin-fp32": "triton-ieee", "compile-mm+argmin-fp32": "triton-ieee"},
        )
        bench.target(f"vq n={n} k={k} d={d} >= 10x cdist+argmin", times, "cdist+argmin-tf32", 10.0)
        bench.target(f"vq n={n} k={k} d={d} >= 4x compiled matmul+argmin", times, "compile-mm+argmin-tf32", 4.0)
        # The equal-precision rows of the exact kernel (no target: at full fp32 it need not win).
        bench.comparison(f"vq n={n} k={k} d={d} exact vs cdist+argmin", times, "triton-ieee", "cdist+argmin-fp32")
        bench.comparison(f"vq n={n} k={k} d={d} exact vs compiled matmul+argmin", times, "triton-ieee",
                         "compile-mm+argmin-fp32")


# --------------------------------------------------------------------------------------------
# GroupNorm + SiLU


def eager_group_norm_silu(x, weight, bias):
    return F.silu(F.group_norm(x, 32, weight, bias, 1e-5))


# Why the one-pass kernel is the default on a GPU at the VAE shapes: one run, so far.
ONE_PASS_EVIDENCE = "chosen on one GPU run (H200, 2026-11-27: bf16 faster than two launches and compile)"

# The one-pass kernel's launch settings the benchmark tries: (tile values, warps, programs per SM).
ONE_PASS_SETTINGS = [(t, w, p) for t in (4096, 8192, 16384) for w in (8, 16) for p in (1, 2)]


def one_pass(x, w, b, setting, num_groups=32):
    """The one-pass GroupNorm+SiLU kernel at one (tile, warps, programs per SM) setting."""
    tile, warps, per_sm = setting
    return groupnorm_triton.group_norm_silu_triton(
        x, w, b, num_groups=num_groups, one_pass=True, tile=tile, num_warps=warps, programs_per_sm=per_sm)


def check_one_pass(bench: Bench) -> None:
    """The one-pass kernel (few, large groups cut into pieces that wait for each other) against the
    reference on random ragged shapes; on the CPU the interpreter runs it with one piece a group."""
    import random

    rng = random.Random("one-pass")
    worst = {torch.float32: 0.0, torch.bfloat16: 0.0}
    for i in range(24):
        dtype = (torch.float32, torch.bfloat16)[i % 2]
        groups = rng.choice([1, 2, 4, 8, 16])
        shape = (rng.choice([1, 2]), groups * rng.randint(1, 12), rng.randint(3, 200), rng.randint(2, 200))
        if bench.dry_run:
            shape = (1, groups, 3, 5)
        x = randn(*shape, dtype=dtype, device=bench.device, seed=i) * 3 + 1
        w, b = (randn(shape[1], dtype=dtype, device=bench.device, seed=100 + s) for s in range(2))
        ref = K.group_norm_silu_reference(x.float(), w.float(), b.float(), num_groups=groups)
        out = one_pass(x, w, b, ONE_PASS_SETTINGS[i % len(ONE_PASS_SETTINGS)], num_groups=groups)
        err = max_err(out, ref) if torch.isfinite(out).all() else math.inf
        worst[dtype] = max(worst[dtype], err)
    for dtype, err in worst.items():
        tol = 1e-4 if dtype == torch.float32 else 1e-2
        check("groupnorm", f"one-pass, 24 random shapes {str(dtype)[6:]}", lambda: {"max_err": err}, tol)


def bench_groupnorm(bench: Bench, sizes: dict) -> None:
    print("\n== groupnorm+silu: b c h w, 32 groups; GB/s counts one read and one write of x")
    print("   PROVISIONAL: the one-pass kernel, the default on a GPU where groups are few and large (the")
    print(f"   VAE shapes), was {ONE_PASS_EVIDENCE};")
    print("   it stays provisional until a second GPU run confirms it (see the end of this output)")
    check_one_pass(bench)
    for shape, dtype, kind in sizes["groupnorm"]:
        x = randn(*shape, dtype=dtype, device=bench.device, seed=8)
        w, b = (randn(shape[1], dtype=dtype, device=bench.device, seed=s) for s in (9, 10))
        ref = K.group_norm_silu_reference(x.float(), w.float(), b.float(), num_groups=32)
        tol = 1e-4 if dtype == torch.float32 else 1e-2
        check("groupnorm", label(shape, dtype),
              lambda: {"max_err": max_err(K.group_norm_silu(x, 32, w, b), ref)}, tol)
        del ref
        times = bench.case(
            "groupnorm", f"{label(shape, dtype)} ({kind})",
            {
                "triton": lambda: K.group_norm_silu(x, 32, w, b),
                # the two-launch split path, with and without its L2 hints and reversed second pass
                **({"triton-two-launch": lambda: groupnorm_triton.group_norm_silu_triton(
                    x, w, b, num_groups=32, one_pass=False),
                    "triton-no-l2": lambda: groupnorm_triton.group_norm_silu_triton(
                    x, w, b, num_groups=32, one_pass=False, l2_reuse=False)} if kind == "vae" else {}),
                # the one-pass kernel's launch settings (--experiments)
                **({f"triton-1pass-t{t}-w{wp}-p{p}": lambda setting=(t, wp, p): one_pass(x, w, b, setting)
                    for t, wp, p in ONE_PASS_SETTINGS} if kind == "vae" and EXPERIMENTS else {}),
                "eager": lambda: eager_group_norm_silu(x, w, b),
                "compile": lambda f=bench.compiled(eager_group_norm_silu): f(x, w, b),
            },
            **costed(costs.group_norm_silu_cost(x.numel(), x.element_size())),
            rate="bytes",
            precision=short(dtype),
        )
        if kind == "unet":
            bench.target(f"groupnorm+silu {label(shape, dtype)} >= 2x eager", times, "eager", 2.0)
        else:
            bench.target(f"groupnorm+silu {label(shape, dtype)} >= 1.2x torch.compile", times, "compile", 1.2)
            bench.variant(f"groupnorm+silu {label(shape, dtype)}: two launches vs compile", times,
                          "triton-two-launch", "compile")
            bench.variant(f"groupnorm+silu {label(shape, dtype)}: two launches, no L2 hints vs compile", times,
                          "triton-no-l2", "compile")
            bench.provisional_default(f"one-pass GroupNorm+SiLU default, {label(shape, dtype)}", times,
                                      "triton-two-launch", "compile", default_here=bench.device.type == "cuda")
            for t, wp, p in ONE_PASS_SETTINGS if EXPERIMENTS else ():
                bench.variant(f"groupnorm+silu {label(shape, dtype)}: one pass t{t} w{wp} p{p} vs compile",
                              times, f"triton-1pass-t{t}-w{wp}-p{p}", "compile")


# --------------------------------------------------------------------------------------------
# Sampler step


def sampler_inputs(shape, dtype, device):
    """x_t, eps_cond and the step's options, all on: guidance, per-sample coefficients, noise, clip."""
    b = shape[0]
    x_t, eps_c, eps_u, noise = (randn(*shape, dtype=dtype, device=device, seed=s) for s in range(11, 15))
    abar_t = torch.linspace(0.1, 0.9, b, device=device)
    kwargs = dict(
        abar_t=abar_t, abar_prev=(abar_t + 0.05).clamp(max=0.999),
        sigma=torch.full((b,), 0.05, device=device), eps_uncond=eps_u, guidance_scale=7.5, noise=noise,
        clip_sample_range=1.0,
    )
    return x_t, eps_c, kwargs


def bench_sampler(bench: Bench, sizes: dict) -> None:
    print("\n== sampler step: CFG + x0 + clip + DDPM step; GB/s counts 4 tensors read, 2 written")
    for dtype, tol in ((torch.float32, 1e-4), (torch.bfloat16, 1e-2)):
        x_t, eps_c, kwargs = sampler_inputs(sizes["sampler"][0], dtype, bench.device)
        upcast = {name: t.float() if isinstance(t, torch.Tensor) else t for name, t in kwargs.items()}
        ref_prev, ref_x0 = K.sampler_step_reference(x_t.float(), eps_c.float(), **upcast)

        def errors():
            x_prev, x0 = K.sampler_step(x_t, eps_c, **kwargs)
            prev_err, x0_err = max_err(x_prev, ref_prev), max_err(x0, ref_x0)
            return {"max_err": max(prev_err, x0_err), "x_prev_err": prev_err, "x0_err": x0_err}

        check("sampler", label(sizes["sampler"][0], dtype), errors, tol)

    for shape in sizes["sampler"]:
        x_t, eps_c, kwargs = sampler_inputs(shape, torch.float32, bench.device)
        times = bench.case(
            "sampler", f"{label(shape, torch.float32)}",
            {
                "triton": lambda: K.sampler_step(x_t, eps_c, **kwargs),
                "eager": lambda: K.sampler_step_reference(x_t, eps_c, **kwargs),
                "compile": lambda f=bench.compiled(K.sampler_step_reference): f(x_t, eps_c, **kwargs),
            },
            **costed(costs.sampler_step_cost(x_t.numel(), x_t.element_size())),
            rate="bytes",
            precision="fp32",
        )
        bench.target(f"sampler step {label(shape, torch.float32)} >= 1.0x torch.compile",
                     times, "compile", 1.0)


# --------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="one or two shapes per kernel")
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny shapes, the Triton interpreter")
    parser.add_argument("--cuda-graph", action="store_true",
                        help="time every call both launched one by one and replayed from a CUDA graph (GPU "
                        "time without Python launch overhead); both times and both ratios are printed side by "
                        "side, and targets use the graph times")
    parser.add_argument("--sections", default="attention,vq,groupnorm,sampler",
                        help="comma-separated subset of attention,vq,groupnorm,sampler, run in that order")
    parser.add_argument("--experiments", action="store_true",
                        help="also time variants that lost before: warp-specialised TMA attention, "
                        "twelve one-pass GroupNorm launch settings")
    parser.add_argument("--out", type=Path, help="where to write the JSON records "
                        "(default benchmarks/results/kernels-<card>-<date>.json)")
    args = parser.parse_args()
    global EXPERIMENTS
    EXPERIMENTS = args.experiments
    sys.stdout.reconfigure(line_buffering=True)  # every line out at once, even into a pipe

    import triton

    if args.dry_run:
        device, card = torch.device("cpu"), "cpu-dry-run"
    elif torch.cuda.is_available():
        device, card = torch.device("cuda"), torch.cuda.get_device_name()
    else:
        print("no CUDA device: run with --dry-run to exercise the code on the CPU")
        return 2
    date = datetime.date.today().isoformat()
    meta = dict(kind="meta", card=card, date=date, torch=torch.__version__, triton=triton.__version__,
                quick=args.quick, dry_run=args.dry_run, cuda_graph=args.cuda_graph, sections=args.sections,
                experiments=args.experiments)
    RECORDS.append(meta)
    print(f"{card}  torch {torch.__version__}  triton {triton.__version__}  {date}")
    start = time.time()
    slug = re.sub(r"[^a-z0-9]+", "-", card.lower()).strip("-")
    out = args.out or Path(__file__).resolve().parent / "results" / f"kernels-{slug}-{date}.json"
    out.parent.mkdir(parents=True, exist_ok=True)

    def save():
        """Write the records so far: a run stopped by a time limit keeps what it measured."""
        meta["seconds"] = time.time() - start
        out.write_text(json.dumps(RECORDS, indent=1, default=str))

    bench = Bench(device, args.dry_run, graph=args.cuda_graph)
    sizes = shapes(args.quick, args.dry_run)
    try:
        bench.measure_peaks()
    except Exception as error:
        print(f"peaks FAILED: {error_text(error)}")
        RECORDS.append(dict(kind="peak", error=error_text(error)))
    order = [name.strip() for name in args.sections.split(",")]  # run in the order given
    wanted = set(order)
    sections = {"attention": bench_attention, "vq": bench_vq, "groupnorm": bench_groupnorm, "sampler": bench_sampler}
    if not wanted <= set(sections):
        print(f"--sections: unknown {sorted(wanted - set(sections))}; expected some of {', '.join(sections)}")
        return 2
    for section in (sections[name] for name in dict.fromkeys(order)):
        try:
            section(bench, sizes)
        except Exception as error:  # e.g. inputs too large for memory: record it and go on
            print(f"{section.__name__} FAILED: {error_text(error)}")
            RECORDS.append(dict(kind="section", section=section.__name__, error=error_text(error)))
        if device.type == "cuda":
            torch.cuda.empty_cache()
        save()
    bench.report_targets()
    save()
    print(f"\nwrote {out} ({meta['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

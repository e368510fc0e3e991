"""Time genlib's Triton kernels against PyTorch on one GPU, check them, and record the numbers.

    python benchmarks/kernels.py                  # the full run, about 5 minutes on an H100
    python benchmarks/kernels.py --quick          # one shape per kernel
    python benchmarks/kernels.py --dry-run        # CPU, tiny shapes, Triton interpreter: the code paths

Order of work: the card's peaks (copy bandwidth, bf16 matmul rate), a correctness check of every
kernel against its reference (max error), then per kernel and shape the median time of the Triton
kernel and of each PyTorch baseline (``triton.testing.do_bench(fn, warmup=25, rep=100,
return_mode="median")``), the achieved TFLOP/s or GB/s and its fraction of the peak, and finally
the targets as PASS/MISS lines. Every measurement is wrapped so that one failure is recorded and
the run goes on. The raw records go to ``--out`` as JSON (default
``benchmarks/results/kernels-<card>-<date>.json``).

A speedup is ``baseline time / Triton time``: above 1 the Triton kernel is faster.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import re
import statistics
import sys
import time
import traceback
from pathlib import Path

# The --dry-run runs the Triton kernels in the interpreter, which must be chosen before triton loads.
DRY_RUN = "--dry-run" in sys.argv
if DRY_RUN:
    os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ["GENLIB_KERNELS"] = "triton"  # the public functions must run the kernels being timed

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import genlib.kernels as K  # noqa: E402

RECORDS: list[dict] = []  # everything measured, as written to the JSON file


# --------------------------------------------------------------------------------------------
# Measuring


class Bench:
    """Timing and peaks for one device; on the CPU (dry run) a plain wall-clock median."""

    def __init__(self, device: torch.device):
        self.device = device
        self.copy_gbps = math.nan
        self.matmul_tflops = math.nan

    def time_ms(self, fn) -> float:
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

    def measure_peaks(self) -> None:
        n = (1 << 28) if self.device.type == "cuda" else (1 << 20)  # fp32 values: 1 GiB on a GPU
        src = torch.empty(n, dtype=torch.float32, device=self.device).fill_(1.0)
        dst = torch.empty_like(src)
        ms = self.time_ms(lambda: dst.copy_(src))
        self.copy_gbps = 2 * src.nbytes / ms / 1e6
        size = 8192 if self.device.type == "cuda" else 256
        a = torch.randn(size, size, dtype=torch.bfloat16, device=self.device)
        b = torch.randn(size, size, dtype=torch.bfloat16, device=self.device)
        ms = self.time_ms(lambda: a @ b)
        self.matmul_tflops = 2 * size**3 / ms / 1e9
        print(f"peaks: copy {self.copy_gbps:8.1f} GB/s   bf16 matmul ({size}^3) {self.matmul_tflops:7.1f} TFLOP/s")
        RECORDS.append(dict(kind="peak", copy_gbps=self.copy_gbps, matmul_tflops=self.matmul_tflops, matmul_size=size))


def run_case(bench: Bench, kernel: str, case: str, impls: dict, *, flops: float = 0.0, nbytes: float = 0.0,
             contexts: dict | None = None) -> dict[str, float]:
    """Time every implementation of one case; print one line each. Returns {impl: ms} (failures left out).

    ``impls`` maps a name to a zero-argument callable; ``"triton"`` must be among them. ``contexts``
    gives a context-manager factory per implementation (the SDPA backend choice).
    """
    times: dict[str, float] = {}
    for name, fn in impls.items():
        record = dict(kind="time", kernel=kernel, case=case, impl=name)
        try:
            if contexts and name in contexts:
                with contexts[name]():
                    ms = bench.time_ms(fn)
            else:
                ms = bench.time_ms(fn)
        except Exception as error:  # one failure must not end the run
            record["error"] = f"{type(error).__name__}: {error}"[:500]
            RECORDS.append(record)
            print(f"{kernel:10s} {case:34s} {name:14s}   FAILED  {record['error'][:150]}")
            continue
        times[name] = ms
        record["ms"] = ms
        if flops:
            record["tflops"] = flops / ms / 1e9
            rate = f"{record['tflops']:7.1f} TFLOP/s ({record['tflops'] / bench.matmul_tflops:4.0%} of matmul)"
        else:
            record["gbps"] = nbytes / ms / 1e6
            rate = f"{record['gbps']:7.1f} GB/s    ({record['gbps'] / bench.copy_gbps:4.0%} of copy)"
        RECORDS.append(record)
        versus = ""
        if name != "triton" and "triton" in times:
            record["speedup_of_triton"] = ms / times["triton"]
            versus = f"   triton is {record['speedup_of_triton']:5.2f}x this"
        print(f"{kernel:10s} {case:34s} {name:14s} {ms:9.4f} ms  {rate}{versus}")
    return times


def check(kernel: str, case: str, fn, tolerance: float) -> None:
    """Run ``fn() -> max error`` (or a dict of named errors, the first compared with the tolerance)."""
    record = dict(kind="check", kernel=kernel, case=case, tolerance=tolerance)
    try:
        errors = fn()
        errors = errors if isinstance(errors, dict) else {"max_err": errors}
        record.update({k: float(v) for k, v in errors.items()})
        first = float(next(iter(errors.values())))
        record["ok"] = first <= tolerance
        detail = "  ".join(f"{k}={float(v):.3g}" for k, v in errors.items())
        print(f"check {kernel:10s} {case:44s} {detail}  (tol {tolerance:g})  {'OK' if record['ok'] else 'BAD'}")
    except Exception as error:
        record["error"] = f"{type(error).__name__}: {error}"[:500]
        print(f"check {kernel:10s} {case:44s} FAILED {record['error'][:200]}")
        traceback.print_exc(limit=3)
    RECORDS.append(record)


def max_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.float() - b.float()).abs().max().item()


def compiled(fn, dry_run: bool):
    """A fresh ``torch.compile`` of ``fn`` (one per shape, static shapes); the dry run only traces."""
    return torch.compile(fn, dynamic=False, backend="eager" if dry_run else "inductor")


# --------------------------------------------------------------------------------------------
# Kernels and their PyTorch baselines


def eager_attention(q, k, v):
    """softmax(q k^T / sqrt(d)) v as three PyTorch calls, in the inputs' dtype."""
    s = (q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5
    return torch.softmax(s, dim=-1) @ v


def eager_group_norm_silu(x, weight, bias):
    return F.silu(F.group_norm(x, 32, weight, bias, 1e-5))


def matmul_argmin(z, codebook):
    """The VQ argmin as a user writes it: the n x k distance matrix, then argmin."""
    dist = z.pow(2).sum(1, keepdim=True) - 2 * z @ codebook.T + codebook.pow(2).sum(1)
    return dist.argmin(1)


def cdist_argmin(z, codebook):
    return torch.cdist(z, codebook).argmin(1)


def sdpa_flash():
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel(SDPBackend.FLASH_ATTENTION)


def randn(*shape, dtype=torch.float32, device="cpu", seed=0):
    gen = torch.Generator(device=device).manual_seed(seed)
    return torch.randn(*shape, generator=gen, dtype=torch.float32, device=device).to(dtype)


# --------------------------------------------------------------------------------------------
# Shapes


def shapes(quick: bool, dry_run: bool) -> dict:
    if dry_run:
        return dict(
            attention=[(1, 2, 64, 64, torch.bfloat16)],
            temporal=[(32, 16, 64)],  # (batch x heads, frames, d)
            vq=[(256, 64, 16)],
            groupnorm=[((2, 64, 4, 4), torch.float32, "unet"), ((1, 32, 8, 8), torch.bfloat16, "vae")],
            sampler=[(2, 3, 8, 8)],
        )
    full = dict(
        attention=[(4, 16, 4096, 64, torch.bfloat16), (4, 16, 4096, 128, torch.bfloat16)],
        temporal=[(16384, 16, 64), (16384, 32, 64), (65536, 16, 64), (65536, 32, 64)],
        vq=[(262144, 1024, 64)],
        groupnorm=[
            ((64, 128, 32, 32), dtype, "unet") for dtype in (torch.bfloat16, torch.float32)
        ] + [
            ((64, 256, 16, 16), dtype, "unet") for dtype in (torch.bfloat16, torch.float32)
        ] + [
            ((1, 256, 256, 256), dtype, "vae") for dtype in (torch.bfloat16, torch.float32)
        ],
        sampler=[(64, 3, 64, 64), (16, 4, 128, 128)],
    )
    if quick:
        full = {name: cases[:1] for name, cases in full.items()}
        full["groupnorm"] = [full["groupnorm"][0], ((1, 256, 256, 256), torch.bfloat16, "vae")]
    return full


# --------------------------------------------------------------------------------------------
# Correctness on the device


def run_checks(device: torch.device, sizes: dict) -> None:
    big = device.type == "cuda"
    # Attention: the benchmark's shapes (same autotuning keys) and the ragged paths.
    for b, h, n, d, dtype in sizes["attention"]:
        q, k, v = (randn(1, 2, n, d, dtype=dtype, device=device, seed=s) for s in range(3))
        ref = K.attention_reference(q.float(), k.float(), v.float())
        check("attention", f"1x2x{n}x{d} {dtype}", lambda: max_err(K.attention(q, k, v), ref), 2e-2)
    ragged = [
        ((2, 4, 1000, 1000, 80), torch.bfloat16, True, 2e-2),
        ((2, 4, 300, 777, 128), torch.float16, False, 5e-3),
        ((1, 2, 500, 500, 96), torch.float32, True, 1e-4),
    ] if big else [((1, 1, 40, 70, 40), torch.float16, True, 5e-3)]
    for (b, h, n, m, d), dtype, causal, tol in ragged:
        q = randn(b, h, n, d, dtype=dtype, device=device, seed=3)
        k, v = (randn(b, h, m, d, dtype=dtype, device=device, seed=s) for s in (4, 5))
        ref = K.attention_reference(q.float(), k.float(), v.float(), causal=causal)
        check("attention", f"{b}x{h}x{n}x{m}x{d} causal={causal} {dtype}",
              lambda: max_err(K.attention(q, k, v, causal=causal), ref), tol)
    bh, t, d = sizes["temporal"][0]
    q, k, v = (randn(bh // 16, 16, t, d, dtype=torch.bfloat16, device=device, seed=s) for s in range(3))
    ref = K.attention_reference(q.float(), k.float(), v.float())
    check("attention", f"temporal {bh}x{t}x{d} bf16", lambda: max_err(K.attention(q, k, v), ref), 2e-2)

    # VQ: index agreement with the exact reference, and how much farther a disagreeing pick is.
    n, k, d = sizes["vq"][0]
    z, codebook = randn(n, d, device=device, seed=6), randn(k, d, device=device, seed=7)
    ref_idx, ref_dist = K.vq_nearest_reference(z, codebook, return_distance=True)

    def vq_errors(precision):
        idx, dist = K.vq_nearest(z, codebook, return_distance=True, input_precision=precision)
        chosen = (z - codebook[idx]).pow(2).sum(1)  # exact distance of the kernel's pick
        return {
            "max_gap": (chosen - ref_dist).max().item(),
            "disagree_frac": (idx != ref_idx).float().mean().item(),
            "dist_max_err": max_err(dist, ref_dist),
        }

    check("vq", f"{n}x{k}x{d} fp32 ieee", lambda: vq_errors("ieee"), 1e-3)
    check("vq", f"{n}x{k}x{d} fp32 tf32", lambda: vq_errors("tf32"), 5e-2)

    # GroupNorm + SiLU, every benchmark shape once.
    for shape, dtype, _ in sizes["groupnorm"]:
        x = randn(*shape, dtype=dtype, device=device, seed=8)
        w = randn(shape[1], dtype=dtype, device=device, seed=9)
        b = randn(shape[1], dtype=dtype, device=device, seed=10)
        ref = K.group_norm_silu_reference(x.float(), w.float(), b.float(), num_groups=32)
        tol = 1e-4 if dtype == torch.float32 else 6e-2
        check("groupnorm", f"{'x'.join(map(str, shape))} {dtype}", lambda: max_err(K.group_norm_silu(x, 32, w, b), ref), tol)

    # Sampler step with every option on.
    for dtype, tol in ((torch.float32, 1e-4), (torch.bfloat16, 6e-2)):
        x_t, eps_c, eps_u, noise, kwargs = sampler_inputs(sizes["sampler"][0], dtype, device)
        kwargs.update(eps_uncond=eps_u, noise=noise, clip_sample_range=1.0)
        upcast = {name: t.float() if isinstance(t, torch.Tensor) else t for name, t in kwargs.items()}
        ref_prev, ref_x0 = K.sampler_step_reference(x_t.float(), eps_c.float(), **upcast)

        def sampler_errors():
            x_prev, x0 = K.sampler_step(x_t, eps_c, **kwargs)
            return {"x_prev_err": max_err(x_prev, ref_prev), "x0_err": max_err(x0, ref_x0)}

        check("sampler", f"{sizes['sampler'][0]} {dtype}", sampler_errors, tol)


def sampler_inputs(shape, dtype, device):
    b = shape[0]
    x_t, eps_c, eps_u, noise = (randn(*shape, dtype=dtype, device=device, seed=s) for s in range(11, 15))
    abar_t = torch.linspace(0.1, 0.9, b, device=device)
    kwargs = dict(alpha_prod_t=abar_t, alpha_prod_t_prev=(abar_t + 0.05).clamp(max=0.999),
                  sigma=torch.full((b,), 0.05, device=device), guidance_scale=7.5)
    return x_t, eps_c, eps_u, noise, kwargs


# --------------------------------------------------------------------------------------------
# Timings


def time_attention(bench, sizes, dry_run):
    results = {}
    for b, h, n, d, dtype in sizes["attention"]:
        q, k, v = (randn(b, h, n, d, dtype=dtype, device=bench.device, seed=s) for s in range(3))
        case = f"b{b} h{h} n{n} d{d} {str(dtype)[6:]}"
        impls = {
            "triton": lambda: K.attention(q, k, v),
            "sdpa-default": lambda: F.scaled_dot_product_attention(q, k, v),
            "sdpa-flash": lambda: F.scaled_dot_product_attention(q, k, v),
            "eager": lambda: eager_attention(q, k, v),
        }
        results[("attention", d)] = run_case(bench, "attention", case, impls, flops=4 * b * h * n * n * d,
                                             contexts={"sdpa-flash": sdpa_flash})
        del q, k, v
    for bh, t, d in sizes["temporal"]:
        q, k, v = (randn(bh // 16, 16, t, d, dtype=torch.bfloat16, device=bench.device, seed=s) for s in range(3))
        case = f"temporal (b h)={bh} t{t} d{d} bf16"
        impls = {
            "triton": lambda: K.attention(q, k, v),
            "sdpa-default": lambda: F.scaled_dot_product_attention(q, k, v),
            "eager": lambda: eager_attention(q, k, v),
        }
        results[("temporal", bh, t)] = run_case(bench, "attention", case, impls, flops=4 * bh * t * t * d)
        del q, k, v
    return results


def time_vq(bench, sizes, dry_run):
    results = {}
    for n, k, d in sizes["vq"]:
        z, codebook = randn(n, d, device=bench.device, seed=6), randn(k, d, device=bench.device, seed=7)
        impls = {
            "triton": lambda: K.vq_nearest(z, codebook),
            "triton-ieee": lambda: K.vq_nearest(z, codebook, input_precision="ieee"),
            "cdist+argmin": lambda: cdist_argmin(z, codebook),
            "compile-mm+argmin": lambda f=compiled(matmul_argmin, dry_run): f(z, codebook),
        }
        results[("vq", n)] = run_case(bench, "vq", f"n{n} k{k} d{d} fp32 (triton: tf32)", impls, flops=2 * n * k * d)
    return results


def time_groupnorm(bench, sizes, dry_run):
    results = {}
    for shape, dtype, kind in sizes["groupnorm"]:
        x = randn(*shape, dtype=dtype, device=bench.device, seed=8)
        w = randn(shape[1], dtype=dtype, device=bench.device, seed=9)
        b = randn(shape[1], dtype=dtype, device=bench.device, seed=10)
        impls = {
            "triton": lambda: K.group_norm_silu(x, 32, w, b),
            "eager": lambda: eager_group_norm_silu(x, w, b),
            "compile": lambda f=compiled(eager_group_norm_silu, dry_run): f(x, w, b),
        }
        case = f"{'x'.join(map(str, shape))} g32 {str(dtype)[6:]} ({kind})"
        results[("groupnorm", kind, shape, dtype)] = run_case(
            bench, "groupnorm", case, impls, nbytes=2 * x.numel() * x.element_size()
        )
    return results


def time_sampler(bench, sizes, dry_run):
    results = {}
    for shape in sizes["sampler"]:
        x_t, eps_c, eps_u, noise, kwargs = sampler_inputs(shape, torch.float32, bench.device)
        kwargs.update(eps_uncond=eps_u, noise=noise, clip_sample_range=1.0)
        impls = {
            "triton": lambda: K.sampler_step(x_t, eps_c, **kwargs),
            "eager": lambda: K.sampler_step_reference(x_t, eps_c, **kwargs),
            "compile": lambda f=compiled(K.sampler_step_reference, dry_run): f(x_t, eps_c, **kwargs),
        }
        case = f"{'x'.join(map(str, shape))} fp32 cfg+noise+clip"
        # 4 tensors read (x_t, two eps, noise), 2 written (x_prev, x0).
        results[("sampler", shape)] = run_case(bench, "sampler", case, impls, nbytes=6 * x_t.numel() * 4)
    return results


# --------------------------------------------------------------------------------------------
# Targets


def targets(results: dict) -> list[tuple[str, tuple, str, float]]:
    """(description, results key, baseline, minimum speedup of triton over the baseline)."""
    out = []
    for key in results:
        if key[0] == "attention":
            out.append((f"attention d={key[1]} >= {0.85 if key[1] == 64 else 0.75}x SDPA default", key,
                        "sdpa-default", 0.85 if key[1] == 64 else 0.75))
            out.append((f"attention d={key[1]} >= 1.3x SDPA flash", key, "sdpa-flash", 1.3))
        elif key[0] == "temporal":
            out.append((f"temporal attention (b h)={key[1]} t={key[2]} >= 3x SDPA", key, "sdpa-default", 3.0))
        elif key[0] == "vq":
            out.append(("vq >= 10x cdist+argmin", key, "cdist+argmin", 10.0))
            out.append(("vq >= 4x compiled matmul+argmin", key, "compile-mm+argmin", 4.0))
        elif key[0] == "groupnorm" and key[1] == "unet":
            out.append((f"groupnorm+silu {key[2]} {key[3]} >= 2x eager", key, "eager", 2.0))
        elif key[0] == "groupnorm" and key[1] == "vae":
            out.append((f"groupnorm+silu {key[2]} {key[3]} >= 1.2x torch.compile", key, "compile", 1.2))
        elif key[0] == "sampler":
            out.append((f"sampler step {key[1]} >= 1.0x torch.compile", key, "compile", 1.0))
    return out


def report_targets(results: dict) -> None:
    print("\n== targets (speedup = baseline time / triton time)")
    for description, key, baseline, minimum in targets(results):
        times = results[key]
        record = dict(kind="target", target=description, baseline=baseline, minimum=minimum)
        if "triton" in times and baseline in times:
            speedup = times[baseline] / times["triton"]
            record.update(speedup=speedup, passed=speedup >= minimum)
            print(f"{'PASS' if speedup >= minimum else 'MISS'}  {description:60s} {speedup:6.2f}x")
        else:
            record.update(passed=False, error="a timing failed")
            print(f"MISS  {description:60s} (a timing failed)")
        RECORDS.append(record)


# --------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one shape per kernel")
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny shapes, the Triton interpreter")
    parser.add_argument("--out", type=Path, help="JSON path (default benchmarks/results/kernels-<card>-<date>.json)")
    args = parser.parse_args()

    import triton

    if args.dry_run:
        device, card = torch.device("cpu"), "cpu-dry-run"
    else:
        if not torch.cuda.is_available():
            print("no CUDA device: run with --dry-run to exercise the code on the CPU")
            return 2
        device, card = torch.device("cuda"), torch.cuda.get_device_name()
    date = datetime.date.today().isoformat()
    meta = dict(kind="meta", card=card, date=date, torch=torch.__version__, triton=triton.__version__,
                quick=args.quick, dry_run=args.dry_run)
    RECORDS.append(meta)
    print(f"{card}  torch {torch.__version__}  triton {triton.__version__}  {date}")
    start = time.time()

    bench = Bench(device)
    sizes = shapes(args.quick, args.dry_run)
    try:
        bench.measure_peaks()
    except Exception as error:
        print(f"peaks FAILED: {type(error).__name__}: {error}")
        RECORDS.append(dict(kind="peak", error=f"{type(error).__name__}: {error}"[:500]))

    print("\n== correctness (max error against the reference)")
    run_checks(device, sizes)

    print("\n== timings")
    results = {}
    for section in (time_attention, time_vq, time_groupnorm, time_sampler):
        try:
            results.update(section(bench, sizes, args.dry_run))
        except Exception as error:  # inputs could not even be built (memory): go on
            print(f"{section.__name__} FAILED: {type(error).__name__}: {error}")
            RECORDS.append(dict(kind="section", section=section.__name__, error=f"{type(error).__name__}: {error}"[:500]))
        if device.type == "cuda":
            torch.cuda.empty_cache()
    report_targets(results)

    meta["seconds"] = time.time() - start
    slug = re.sub(r"[^a-z0-9]+", "-", card.lower()).strip("-")
    out = args.out or Path(__file__).resolve().parent / "results" / f"kernels-{slug}-{date}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(RECORDS, indent=1, default=str))
    print(f"\nwrote {out} ({meta['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

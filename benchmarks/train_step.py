"""Where a training step's time goes: chapter 07's `gpu` DDPM step, part by part.

    python benchmarks/train_step.py                   # on a GPU: both kernel backends, about 30 s
    python benchmarks/train_step.py --device cpu --steps 3 --batch 8    # the code path, on a CPU

An H200 run (2026-11-27) trained chapter 07's three pixel DDPMs at about 70 ms a step, far above
what the GPU needs for a 4.4M-parameter U-Net at batch 128. This script takes the same model and
batch and times, over ``--steps`` steps after a warm-up:

* the wall time of each part of `genlib.train.fit`'s loop: drawing the batch (the shapes world, on
  the CPU), moving it to the device, the forward loss, backward, gradient clipping, the optimiser
  step and the EMA update (each ended by a device synchronisation, so the parts add up);
* the same steps without those synchronisations (the loop as `fit` runs it);
* the same steps with the batches drawn ahead by a worker process (`train.prefetched`, as
  genlib's training functions draw the shapes world on a GPU);
* the step alone, one batch reused, at the batch and at ``--scale`` times it (a step that waits
  on Python takes about as long at 4x the batch, one that waits on the GPU about 4x as long);
* on a GPU, the host-device synchronisations in one step and the lines that called them (PyTorch's
  sync debug mode): each one empties the GPU's queue;
* with the profiler: kernels launched per step and the sum of their GPU times. When the GPU time
  is much less than the wall time, the step waits on Python and the launches, not on the GPU.

It runs once with ``GENLIB_KERNELS=auto`` (Triton GroupNorm+SiLU and attention forwards on a GPU)
and once with ``torch`` (PyTorch's own ops), and writes the numbers as JSON to ``--out``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import itertools
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("GENLIB_PROFILE", "gpu")  # chapter 07's gpu model, whatever the machine

import torch  # noqa: E402

from genlib import train  # noqa: E402
from genlib.data import shapes  # noqa: E402
from genlib.models import ddpm  # noqa: E402

PARTS = ("data", "to_device", "forward", "backward", "clip", "optimizer", "ema")


def count_syncs(run) -> dict[str, int]:
    """Host-device synchronisations during ``run()`` (CUDA only), counted where Python called them.

    PyTorch's sync debug mode warns at every synchronising call (``.item()``, a blocking copy, a
    ``nonzero``); each one empties the GPU's queue, so the step's Python time and GPU time add up
    instead of overlapping."""
    import collections
    import warnings

    where: collections.Counter = collections.Counter()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            run()
    finally:
        torch.cuda.set_sync_debug_mode("default")
        torch.cuda.synchronize()
    for w in caught:
        if "synchroniz" in str(w.message):
            where[f"{Path(w.filename).name}:{w.lineno}"] += 1
    return dict(where.most_common())


def one_backend(backend: str, device: torch.device, steps: int, batch: int, scale: int = 1) -> dict:
    os.environ["GENLIB_KERNELS"] = backend
    cfg = ddpm.DDPMConfig.preset("shapes", "linear", prediction_type="v_prediction", batch_size=batch)
    torch.manual_seed(0)
    model = ddpm.DDPM(cfg).to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, fused=True if device.type == "cuda" else None)  # as train.fit
    ema = train.EMA(model, 0.999)
    stream = shapes.image_stream(batch, size=cfg.image_size, seed=0)
    on_gpu = device.type == "cuda"
    amp = torch.autocast(device.type, dtype=torch.bfloat16) if on_gpu else contextlib.nullcontext()

    def sync():
        if on_gpu:
            torch.cuda.synchronize()

    def step(timed: dict | None):
        marks = [time.perf_counter()]

        def mark():
            if timed is not None:
                sync()
            marks.append(time.perf_counter())

        x = next(stream)
        mark()
        x = train.to_device(x, device)
        mark()
        with amp:
            loss = model.loss(x)
        mark()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        mark()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        mark()
        opt.step()
        mark()
        ema.update(model)
        mark()
        if timed is not None:
            for name, a, b in zip(PARTS, marks, marks[1:]):
                timed[name] = timed.get(name, 0.0) + (b - a) * 1e3 / steps

    for _ in range(3):  # warm: Triton compiles, cuDNN picks algorithms
        step(None)
    sync()
    parts: dict[str, float] = {}
    for _ in range(steps):
        step(parts)
    start = time.perf_counter()
    for _ in range(steps):
        step(None)
    sync()
    free_running = (time.perf_counter() - start) * 1e3 / steps

    def free_run() -> float:
        for _ in range(2):
            step(None)
        sync()
        start = time.perf_counter()
        for _ in range(steps):
            step(None)
        sync()
        return (time.perf_counter() - start) * 1e3 / steps

    # The batches drawn by a worker process and pinned (train.prefetched, as genlib's training
    # functions draw the shapes world now).
    def ahead(n: int, seed: int):
        return train.prefetched(functools.partial(shapes.image_stream, n, size=cfg.image_size, seed=seed), enabled=True)

    stream = ahead(batch, 1)
    prefetched_ms = free_run()
    # The step alone: one batch drawn once and reused, at the batch and at ``scale`` times it.
    stream = itertools.repeat(next(shapes.image_stream(batch, size=cfg.image_size, seed=2)))
    no_data_ms = free_run()
    scaled_ms = None
    if scale > 1:
        stream = itertools.repeat(next(shapes.image_stream(batch * scale, size=cfg.image_size, seed=2)))
        scaled_ms = free_run()
    stream = ahead(batch, 3)

    kernels, gpu_ms, syncs = None, None, None
    if on_gpu:
        syncs = count_syncs(lambda: step(None))
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            for _ in range(3):
                step(None)
            sync()
        device_events = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
        kernels = len(device_events) / 3
        gpu_ms = sum(e.device_time for e in device_events) / 3 / 1e3  # device_time is in microseconds
    return dict(backend=backend, parts_ms=parts, synced_total_ms=sum(parts.values()),
                free_running_ms=free_running, prefetched_ms=prefetched_ms, no_data_ms=no_data_ms, scale=scale,
                scaled_batch_ms=scaled_ms, syncs_per_step=syncs, kernels_per_step=kernels,
                gpu_kernel_ms_per_step=gpu_ms)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=128, help="chapter 07's gpu batch (default 128)")
    parser.add_argument("--backends", default="auto,torch")
    parser.add_argument("--scale", type=int, default=4, help="also time the first backend at this many times the batch")
    parser.add_argument("--out", type=Path, default=None, help="JSON file for the results")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"{name}  torch {torch.__version__}  batch {args.batch}  {args.steps} steps")
    results = []
    for i, backend in enumerate(args.backends.split(",")):
        r = one_backend(backend.strip(), device, args.steps, args.batch, args.scale if i == 0 else 1)
        results.append(r)
        parts = "  ".join(f"{k} {v:.2f}" for k, v in r["parts_ms"].items())
        gpu = (f"; {r['kernels_per_step']:.0f} kernels, {r['gpu_kernel_ms_per_step']:.2f} ms of GPU time a step"
               if r["kernels_per_step"] is not None else "")
        print(f"GENLIB_KERNELS={r['backend']:5s} free-running {r['free_running_ms']:.2f} ms a step{gpu}")
        print(f"      synchronised parts (ms): {parts}")
        print(f"      batches drawn ahead by a worker process: {r['prefetched_ms']:.2f} ms a step; "
              f"one batch reused (no data): {r['no_data_ms']:.2f} ms"
              + (f", at {r['scale']}x the batch {r['scaled_batch_ms']:.2f} ms" if r["scaled_batch_ms"] else ""))
        if r["syncs_per_step"] is not None:
            total = sum(r["syncs_per_step"].values())
            print(f"      host-device synchronisations in one step: {total}  {r['syncs_per_step']}")
    if args.out:
        args.out.write_text(json.dumps(dict(device=name, torch=torch.__version__, batch=args.batch,
                                            date=time.strftime("%Y-%m-%d"), results=results), indent=1))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""DDIM sampling cost split into the network's time and the sampler's own time.

    python benchmarks/ddim_sampler.py [--n 64] [--size 32] [--steps 50] [--repeats 3] [--max-overhead 0.05]

Draws ``--n`` images of ``--size`` x ``--size`` with a 50-step DDIM (eta = 0.5, so noise is drawn
too, and static clipping of x0) using an untrained U-Net of the ``cpu`` profile's size
(:meth:`genlib.nn.unet.UNetConfig.preset` with ``GENLIB_PROFILE=cpu``). The model is wrapped so
each of its calls is timed; the sampler's overhead is the rest of the wall time (timestep lists,
the x0 / noise-direction arithmetic of :func:`genlib.kernels.sampler_step`, noise draws). The run
fails (exit 1) when the overhead exceeds ``--max-overhead`` (default 5%) of the model's time in the
best of ``--repeats`` runs. Timings on a shared machine are noisy; the load average is printed.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

os.environ.setdefault("GENLIB_PROFILE", "cpu")

import torch  # noqa: E402

from genlib.diffusion import NoiseSchedule, ddim_sample  # noqa: E402
from genlib.nn.unet import UNet, UNetConfig  # noqa: E402


class Timed(torch.nn.Module):
    """Wraps a model and adds up the wall time of its forward calls."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model, self.seconds, self.calls = model, 0.0, 0

    def forward(self, x, t, cond=None):
        start = time.perf_counter()
        out = self.model(x, t, cond)
        self.seconds += time.perf_counter() - start
        self.calls += 1
        return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--max-overhead", type=float, default=0.05)
    args = p.parse_args(argv)

    torch.manual_seed(0)
    unet = UNet(UNetConfig.preset(in_channels=3, image_size=args.size)).eval()
    with torch.no_grad():  # give the output layer weights, so the predictions are not all zero
        unet.conv_out.weight.normal_(0, 0.02)
    model = Timed(unet)
    schedule = NoiseSchedule("cosine", 1000)
    print(f"load average before: {os.getloadavg()}; {platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; U-Net {unet.num_parameters():,} parameters")
    ddim_sample(model, schedule, (args.n, 3, args.size, args.size), num_steps=2, eta=0.5, clip_sample=1.0)  # warm-up

    runs = []
    for r in range(args.repeats):
        model.seconds, model.calls = 0.0, 0
        start = time.perf_counter()
        ddim_sample(model, schedule, (args.n, 3, args.size, args.size), num_steps=args.steps, eta=0.5,
                    clip_sample=1.0, generator=torch.Generator().manual_seed(r))
        total = time.perf_counter() - start
        runs.append((total, model.seconds, total - model.seconds))
        print(f"run {r}: total {total:.2f} s, model {model.seconds:.2f} s ({model.calls} calls), "
              f"sampler {total - model.seconds:.3f} s = {(total - model.seconds) / model.seconds:.2%} of the model")
    best = min(runs, key=lambda run: run[2] / run[1])
    ratio = best[2] / best[1]
    print(f"load average after: {os.getloadavg()}")
    print(f"best: sampler overhead {ratio:.2%} of model time (limit {args.max_overhead:.0%}): "
          f"{'PASS' if ratio <= args.max_overhead else 'FAIL'}")
    return 0 if ratio <= args.max_overhead else 1


if __name__ == "__main__":
    sys.exit(main())

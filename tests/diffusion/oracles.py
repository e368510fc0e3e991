"""Denoisers known in closed form, standing in for a trained network in sampler tests.

Not a test module (no ``test_`` prefix); the tests import it by path through ``conftest``-free
``importlib``-less relative import, since ``tests/diffusion`` is on ``sys.path`` under pytest's
rootdir-relative import mode.
"""

import torch

from genlib.diffusion import NoiseSchedule, target


class GaussianOracle(torch.nn.Module):
    """The exact optimal prediction for data ~ N(mean, std^2 I): E[eps | x_t] in closed form.

    ``x_t = a x0 + s eps`` with x0 ~ N(m, c^2): ``E[x0 | x_t] = m + a c^2 (x_t - a m) / (a^2 c^2 + s^2)``.
    ``std = 0`` is a single point (a delta).
    """

    def __init__(self, schedule: NoiseSchedule, mean: float = 0.0, std: float = 1.0, prediction_type: str = "epsilon"):
        super().__init__()
        self.schedule, self.m, self.c, self.kind = schedule, mean, std, prediction_type
        self.calls = 0

    def forward(self, x_t, t, cond=None):
        self.calls += 1
        abar = self.schedule.gather(self.schedule.alphas_cumprod, t, x_t)
        a, s = abar.sqrt(), (1 - abar).sqrt()
        m = self.m if cond is None else self.m + cond.to(x_t.dtype).reshape(-1, *[1] * (x_t.ndim - 1))
        x0 = m + a * self.c**2 * (x_t - a * m) / (a**2 * self.c**2 + s**2)
        eps = (x_t - a * x0) / s
        return target(self.kind, x0, eps, abar)

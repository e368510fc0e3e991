"""Test-session defaults: the `ci` profile, a cold model cache, static outputs, Triton's CPU
interpreter. Set before anything imports genlib or triton; the nbval kernels inherit them."""

import os
import tempfile

os.environ.setdefault("GENLIB_PROFILE", "ci")
os.environ.setdefault("GENLIB_STATIC", "1")
os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
if "GENLIB_CACHE" not in os.environ:
    os.environ["GENLIB_CACHE"] = tempfile.mkdtemp(prefix="genlib-test-cache-")


import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _fixed_global_seed():
    """Every test starts from the same global random state, so a test that draws without its own
    generator sees the same numbers whichever tests ran before it (adding a test elsewhere must not
    change another's draws)."""
    import random

    import numpy as np
    import torch

    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    yield

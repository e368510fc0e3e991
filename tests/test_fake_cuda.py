"""The fake CUDA device (tests/fake_cuda.py) catches what a real GPU would refuse, and genlib's
training and sampling paths run clean under it. In a subprocess: installing it changes torch.cuda."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent("""
    import sys
    sys.path.insert(0, "tests")
    import torch
    import fake_cuda
    fake_cuda.install()
    from genlib import config, train
    from genlib.models import ddpm

    dev = config.device()
    assert dev.type == "cuda", dev
    net = torch.nn.Linear(3, 2).to(dev)
    caught = []
    for name, bad in [("cpu input", lambda: net(torch.randn(4, 3))),
                      ("numpy", lambda: net(torch.randn(4, 3, device=dev)).detach().numpy()),
                      ("cat", lambda: torch.cat([torch.zeros(2, device=dev), torch.zeros(2)])),
                      ("generator", lambda: torch.randn(3, generator=torch.Generator(), device=dev))]:
        try:
            bad()
        except fake_cuda.FakeDeviceError:
            caught.append(name)
    print("caught", caught)
    assert caught == ["cpu input", "numpy", "cat", "generator"], caught
    assert train.batched(net.forward, torch.randn(5, 3), 2).device.type == "cpu"

    model = ddpm.load_ddpm("shapes")  # trains the ci model on the fake GPU
    assert next(model.parameters()).is_cuda
    x = ddpm.sample(model, 2, num_steps=3, seed=0)
    assert x.shape[0] == 2
    print("clean")
""")


def test_fake_cuda_catches_device_mixups_and_genlib_runs_clean_under_it(tmp_path):
    env = dict(os.environ, GENLIB_PROFILE="ci", GENLIB_STATIC="1", GENLIB_KERNELS="torch", OMP_NUM_THREADS="1",
               GENLIB_CACHE=str(tmp_path), PYTHONPATH=str(ROOT), MPLBACKEND="Agg")
    env.pop("GENLIB_DEVICE", None)
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "clean" in done.stdout


def test_video_chapters_run_clean_on_the_fake_gpu(tmp_path):
    """Chapters 11, 12 and 14 (VideoGPT, Video-LDM, Make-A-Video: about 20 s in the ci profile) with
    their models on the fake GPU: no cell may fail (a device mix-up raises there)."""
    env = dict(os.environ, GENLIB_PROFILE="ci", GENLIB_CACHE=str(tmp_path))
    env.pop("GENLIB_DEVICE", None)
    chapters = ["chapters/11_videogpt.md", "chapters/12_video_ldm.md", "chapters/14_make_a_video.md"]
    done = subprocess.run([sys.executable, "tests/run_fake_cuda.py", *chapters], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert done.stdout.count(": 0 failing cells") == 3, done.stdout[-3000:]

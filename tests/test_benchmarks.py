"""The GPU benchmark scripts' code paths, run on the CPU at tiny sizes (their numbers mean nothing
here; the GPU runs are in benchmarks/RESULTS.md)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_train_step_profile_runs_and_its_parts_add_up(tmp_path):
    out = tmp_path / "step.json"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "train_step.py"), "--device", "cpu", "--steps", "1",
                    "--batch", "2", "--backends", "torch", "--scale", "2", "--out", str(out)],
                   check=True, cwd=ROOT, capture_output=True, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    result = json.loads(out.read_text())["results"][0]
    parts = result["parts_ms"]
    assert set(parts) == {"data", "to_device", "forward", "backward", "clip", "optimizer", "ema"}
    assert all(v >= 0 for v in parts.values()) and parts["forward"] > 0 and parts["backward"] > 0
    assert abs(result["synced_total_ms"] - sum(parts.values())) < 1e-6
    assert result["prefetched_ms"] > 0 and result["no_data_ms"] > 0
    assert result["scale"] == 2 and result["scaled_batch_ms"] > 0
    assert result["kernels_per_step"] is None and result["syncs_per_step"] is None  # counted on a GPU only

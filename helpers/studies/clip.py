"""CLIP in miniature (Radford et al., ICML 2021, "Learning Transferable Visual Models From
Natural Language Supervision"): an image encoder and a text encoder, each summarised by one
token, trained so that a picture and its caption land close together in a shared space.

    python -m helpers.studies.clip --out data/clip_lite.pt --threads 1

- Captions: each image's own attributes in words, "a red ring in the top left" (`caption`,
  `captions`), and a word-level tokenizer over their fixed vocabulary (`encode`, `decode`).
- Image encoder: the series' VisionTransformer; its `head` projects the final CLS token into
  the shared space, so `visual(x)` is the image embedding (before L2 normalisation).
- Text encoder: `TextTransformer`, BERT-style: a [CLS] token at position 0, word and
  position embeddings, the ViT's own `Block`s (helpers.model.Block), a final norm, and a
  `head` that projects the [CLS] output. Padding is masked out of the attention.
- Loss: CLIP's symmetric InfoNCE (`clip_loss`) with a learned temperature, `logit_scale`
  (stored as a log, initialised to log(1 / 0.07) and clamped so the logits scale <= 100).
- Batches: no caption twice in a batch (`caption_batches`), so every off-diagonal pair of
  the loss is a true negative (the dataset has 324 distinct captions; a random batch
  holds dozens of same-caption pairs, each a false negative; notebook 07 counts them).
"""

from __future__ import annotations

import math
import string
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..checkpoint import (
    build_model,
    claim_output,
    command_parser,
    parse_command,
    read_model_file,
    save_model,
)
from ..data import CLASSES, COLOUR_NAMES, ShapesDataset
from ..model import (
    Block,
    VisionTransformer,
    check_count,
    make_config,
    run_blocks,
    trunc_normal_,
)
from ..paths import DATA_DIR, data_file
from ..progress import progress_bar
from ..runtime import (
    check_loss,
    finite_number,
    model_device,
    provenance,
    require_finite,
    seed_everything,
)
from ..train import lr_at

FORMAT = "inside-the-cls-token/clip-lite"
COMMAND = "python -m helpers.studies.clip --out data/clip_lite.pt --threads 1"

# --------------------------------------------------------------------------------------
# Captions and the tokenizer
# --------------------------------------------------------------------------------------

ROWS = ("top", "middle", "bottom")
COLS = ("left", "centre", "right")
PAD, CLS, UNK = "[PAD]", "[CLS]", "[UNK]"
VOCAB = (PAD, CLS, UNK, "a", "in", "the", *CLASSES, *COLOUR_NAMES, *ROWS, *COLS)
WORD_ID = {w: i for i, w in enumerate(VOCAB)}
PAD_ID, CLS_ID, UNK_ID = WORD_ID[PAD], WORD_ID[CLS], WORD_ID[UNK]
CONTEXT_LENGTH = 8  # [CLS] + the longest caption, "a red ring in the top left"
NUM_CELLS = len(ROWS) * len(COLS)


def position_cell(cx, cy, size: int = 32):
    """The cell (row * 3 + col) of a 3x3 grid for object centres (cx, cy) in pixels: left of
    the image centre, on it (within 2 px), or right of it; likewise top, middle, bottom."""

    def third(v):
        v = np.asarray(v, dtype=np.float64)
        return np.where(v < size / 2 - 2, 0, np.where(v > size / 2 + 2, 2, 1))

    return third(cy) * 3 + third(cx)


def _index(value, n: int, name: str, names=None) -> int:
    """`value` as an int in 0 .. n - 1, or an error naming the range (and the names)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        if isinstance(value, (torch.Tensor, np.ndarray)) and value.ndim == 0:
            value = value.item()
        if isinstance(value, float) and value.is_integer():
            value = int(value)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be a whole number in 0 .. {n - 1}, got {value!r}.")
    if not 0 <= value < n:
        which = f" ({', '.join(f'{i}: {w}' for i, w in enumerate(names))})" if names else ""
        raise ValueError(f"{name}={value} is out of range: it must be 0 .. {n - 1}{which}.")
    return int(value)


def place(cell: int) -> str:
    """Words for a cell: "top left", "middle right", "bottom centre"; the middle one "centre"."""
    cells = [f"{r} {c}" for r in ROWS for c in COLS]
    row, col = divmod(_index(cell, NUM_CELLS, "cell (row * 3 + col of the 3x3 grid)", cells), 3)
    return "centre" if (row, col) == (1, 1) else f"{ROWS[row]} {COLS[col]}"


def caption(shape: int, colour: int, cell: int) -> str:
    """'a {colour} {shape} in the {place}', e.g. caption(4, 0, 0) = 'a red ring in the top left'."""
    shape = _index(shape, len(CLASSES), "shape", CLASSES)
    colour = _index(colour, len(COLOUR_NAMES), "colour", COLOUR_NAMES)
    return f"a {COLOUR_NAMES[colour]} {CLASSES[shape]} in the {place(cell)}"


def caption_id(shape, colour, cell):
    """The index of a caption in ALL_CAPTIONS: (shape * 6 + colour) * 9 + cell (arrays work)."""
    return (np.asarray(shape) * len(COLOUR_NAMES) + np.asarray(colour)) * NUM_CELLS + np.asarray(
        cell
    )


ALL_CAPTIONS = tuple(
    caption(s, c, p)
    for s in range(len(CLASSES))
    for c in range(len(COLOUR_NAMES))
    for p in range(NUM_CELLS)
)  # 324 distinct captions, in caption_id order


def attribute_labels(dataset) -> dict[str, torch.Tensor]:
    """Per image of a ShapesDataset: "shape", "colour" and "cell" (3x3 position) indices,
    and "caption" (index into ALL_CAPTIONS). The class label is the shape."""
    attrs = getattr(dataset, "attributes", None)
    if attrs is None:
        raise TypeError(
            f"expected a ShapesDataset (it has .attributes), got {type(dataset).__name__}."
        )
    shape = dataset.labels.numpy()
    colour = attrs["colour"].numpy()
    cell = position_cell(attrs["cx"].numpy(), attrs["cy"].numpy(), dataset.images.shape[-1])
    out = {
        "shape": shape,
        "colour": colour,
        "cell": cell,
        "caption": caption_id(shape, colour, cell),
    }
    return {k: torch.as_tensor(np.asarray(v), dtype=torch.long) for k, v in out.items()}


def captions(dataset) -> list[str]:
    """The caption of every image of a ShapesDataset, from its own attributes."""
    return [ALL_CAPTIONS[i] for i in attribute_labels(dataset)["caption"].tolist()]


def encode(texts, context_length: int = CONTEXT_LENGTH, unknown: str = "error") -> torch.Tensor:
    """Texts -> token ids (B, context_length): [CLS], the words, then [PAD]s.

    Words are split on spaces (case and surrounding spaces ignored). A word outside VOCAB is an
    error naming it (unknown="unk": it becomes [UNK] instead); a text too long is an error.
    """
    if isinstance(texts, str):
        texts = [texts]
    if texts is None or isinstance(texts, (bytes, torch.Tensor)) or not hasattr(texts, "__iter__"):
        raise TypeError(
            f"texts must be a string or a list of strings, got {type(texts).__name__} "
            '(e.g. encode("a red ring") or encode(["a ring", "a blue disk"])).'
        )
    if unknown not in ("error", "unk"):
        raise ValueError(f'unknown={unknown!r}: choose "error" or "unk".')
    rows = []
    for text in texts:
        if not isinstance(text, str):
            raise TypeError(
                f"texts must be strings, got {type(text).__name__} ({text!r}): pass captions "
                'such as "a red ring in the top left".'
            )
        words = text.lower().split()
        if not words:
            raise ValueError(
                f"{text!r} is an empty text: it would be [CLS] alone, the same embedding for "
                'every empty caption; pass words, e.g. "a red ring".'
            )
        bad = [w for w in words if w not in WORD_ID or w in (PAD, CLS)]
        if bad and unknown == "error":
            raise ValueError(
                f"{text!r}: the word(s) {bad} are not in the vocabulary; the text encoder knows "
                f"only {list(VOCAB[3:])} (use unknown='unk' to map other words to [UNK])."
            )
        if len(words) + 1 > context_length:
            raise ValueError(
                f"{text!r} has {len(words)} words; with [CLS] at most {context_length - 1} fit "
                f"in context_length={context_length}."
            )
        ids = [CLS_ID] + [WORD_ID[w] if w not in bad else UNK_ID for w in words]
        rows.append(ids + [PAD_ID] * (context_length - len(ids)))
    if not rows:
        raise ValueError("no texts: pass at least one.")
    return torch.tensor(rows, dtype=torch.long)


def decode(ids) -> list[str]:
    """Token ids (B, T) -> texts, without [CLS] and [PAD] (the inverse of encode)."""
    ids = torch.as_tensor(ids)
    if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
        raise TypeError(f"ids must be whole numbers (token ids from encode), got {ids.dtype}.")
    if ids.ndim == 1:
        ids = ids[None]
    if ids.ndim != 2:
        raise ValueError(f"ids must be (T,) or (B, T), got shape {tuple(ids.shape)}.")
    if ids.numel() and (ids.min() < 0 or ids.max() >= len(VOCAB)):
        bad = sorted({i for i in ids.flatten().tolist() if not 0 <= i < len(VOCAB)})
        raise ValueError(
            f"token ids {bad[:5]} are not in the vocabulary: ids must be 0 .. {len(VOCAB) - 1} "
            "(make them with helpers.studies.clip.encode)."
        )
    return [" ".join(VOCAB[i] for i in row.tolist() if i not in (PAD_ID, CLS_ID)) for row in ids]


CAPTION_TOKENS = encode(ALL_CAPTIONS)  # (324, CONTEXT_LENGTH)


# --------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClipConfig:
    embed_out: int = 64  # width of the shared space
    text_dim: int = 64  # text token width
    text_depth: int = 2
    text_heads: int = 4
    mlp_ratio: float = 2.0
    context_length: int = CONTEXT_LENGTH

    def block_config(self):
        """The ViTConfig whose block fields (width, heads, MLP ratio) the text Blocks read."""
        return make_config(
            embed_dim=self.text_dim,
            depth=self.text_depth,
            num_heads=self.text_heads,
            mlp_ratio=self.mlp_ratio,
        )

    def vision_config(self):
        """The image encoder: the series' default ViT, its head projecting into the space."""
        return make_config(num_classes=self.embed_out)


class TextTransformer(nn.Module):
    """Token ids (B, T) -> text embedding (B, embed_out), read from the [CLS] token at 0.

    Tokens: [CLS] (the row CLS_ID of `token_embed`, the same for every text: the text
    side's learned summary token), the words, [PAD]s, plus a learned `pos_embed` slot each.
    Blocks, final norm and head read like the ViT's; padding keys are masked out.
    """

    def __init__(self, cfg: ClipConfig | None = None):
        super().__init__()
        cfg = cfg or ClipConfig()
        self.cfg = cfg
        D = cfg.text_dim
        self.token_embed = nn.Embedding(len(VOCAB), D)
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.context_length, D))
        self.blocks = nn.ModuleList([Block(cfg.block_config()) for _ in range(cfg.text_depth)])
        self.norm = nn.LayerNorm(D, eps=1e-6)
        self.head = nn.Linear(D, cfg.embed_out)
        self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        """As the ViT: Linear and embeddings truncated normal (std 0.02), zero biases,
        LayerNorm 1 and 0 (the series' samplers: the same on every torch version)."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        trunc_normal_(self.token_embed.weight, std=0.02)
        trunc_normal_(self.pos_embed, std=0.02)

    def check_ids(self, ids) -> torch.Tensor:
        if not isinstance(ids, torch.Tensor) or ids.dtype != torch.long or ids.ndim != 2:
            got = f"{ids.dtype} {tuple(ids.shape)}" if isinstance(ids, torch.Tensor) else ids
            raise ValueError(
                f"expected token ids, a long tensor (B, T), got {got!r}: make them with "
                "helpers.studies.clip.encode(texts)."
            )
        if ids.shape[1] > self.cfg.context_length or ids.shape[0] == 0:
            raise ValueError(
                f"ids {tuple(ids.shape)}: need at least one text and at most "
                f"{self.cfg.context_length} tokens each."
            )
        if ids.min() < 0 or ids.max() >= len(VOCAB) or (ids[:, 0] != CLS_ID).any():
            raise ValueError(
                "ids must be vocabulary indices that start with [CLS]: make them with "
                "helpers.studies.clip.encode(texts)."
            )
        return ids

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """Token ids (B, T) -> the first block's input (B, T, D): word + position embedding."""
        ids = self.check_ids(ids)
        return self.token_embed(ids) + self.pos_embed[:, : ids.shape[1]]  # (B, T, D)

    @staticmethod
    def padding_mask(ids: torch.Tensor) -> torch.Tensor:
        """(B, 1, 1, T) bool, True = a real token that may be attended to; padding is not."""
        return (ids != PAD_ID)[:, None, None, :]

    def forward_features(self, ids, return_attention=False):
        """Token ids -> final tokens (B, T, D) after the norm; with return_attention=True:
        (tokens, [per block (B, nh, T, T)])."""
        x = self.embed(ids)
        masks = [self.padding_mask(ids)] * len(self.blocks)  # the same mask in every block
        x, attentions = run_blocks(self.blocks, x, masks, return_attention)
        x = self.norm(x)
        return (x, attentions) if return_attention else x

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Token ids (B, T) -> text embeddings (B, embed_out), from the [CLS] token alone."""
        return self.head(self.forward_features(ids)[:, 0])  # (B, embed_out)


class CLIPLite(nn.Module):
    """`visual` (the series' ViT) and `text` (TextTransformer) into one space, and the
    learned temperature `logit_scale` (a log: the logits are scaled by exp(logit_scale))."""

    def __init__(self, cfg: ClipConfig | None = None):
        super().__init__()
        self.cfg = cfg or ClipConfig()
        self.visual = VisionTransformer(self.cfg.vision_config())
        self.text = TextTransformer(self.cfg)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))  # CLIP's start

    def encode_image(self, images) -> torch.Tensor:
        """Images (B, 3, H, W) -> unit-length embeddings (B, embed_out), from the CLS token."""
        return F.normalize(self.visual(images), dim=-1)

    def encode_text(self, texts) -> torch.Tensor:
        """Texts (strings) or token ids (B, T) -> unit-length embeddings (B, embed_out)."""
        ids = texts if isinstance(texts, torch.Tensor) else encode(texts)
        ids = ids.to(self.logit_scale.device)
        return F.normalize(self.text(ids), dim=-1)

    def forward(self, images, ids) -> torch.Tensor:
        """CLIP's loss for a batch of matching (image, caption) pairs."""
        return clip_loss(self.visual(images), self.text(ids), self.logit_scale)


MAX_LOGIT_SCALE = math.log(100)  # CLIP: the logits are never scaled by more than 100


def clip_loss(image_emb, text_emb, logit_scale) -> torch.Tensor:
    """CLIP's symmetric InfoNCE loss for B matching pairs (row i of each is one pair).

    image_emb, text_emb: (B, E), not yet normalised; logit_scale: a scalar, the log of the
    inverse temperature. logits[i, j] = exp(logit_scale) * cos(image i, text j); the loss is
    the mean of the cross-entropies of each image over the texts (rows) and of each text over
    the images (columns), with the matching pair (the diagonal) as the target.
    """
    if image_emb.ndim != 2 or image_emb.shape != text_emb.shape:
        raise ValueError(
            f"image and text embeddings must both be (B, E), one row per pair, got "
            f"{tuple(image_emb.shape)} and {tuple(text_emb.shape)}."
        )
    img = F.normalize(image_emb, dim=-1)  # (B, E), unit rows
    txt = F.normalize(text_emb, dim=-1)  # (B, E)
    logits = logit_scale.exp() * img @ txt.T  # (B, B): image i vs text j
    target = torch.arange(len(img), device=img.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


# --------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------


@dataclass
class ClipTrainConfig:
    steps: int = 1500
    batch_size: int = 128  # distinct captions per batch (at most 324)
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_steps: int = 100
    seed: int = 0

    def __post_init__(self):
        check_count(self.steps, "steps")
        check_count(self.batch_size, "batch_size")
        if self.batch_size > len(ALL_CAPTIONS):
            raise ValueError(
                f"batch_size={self.batch_size}: a batch holds each caption at most once, and "
                f"there are {len(ALL_CAPTIONS)} distinct captions."
            )
        if self.batch_size == 1:
            raise ValueError(
                "batch_size=1: with one pair in a batch the contrastive loss is exactly 0 (the "
                "only text is the right one; there are no negatives to push away), so nothing "
                "is learned; use batch_size >= 2 (the default is 128)."
            )
        for name in ("lr", "weight_decay"):
            finite_number(getattr(self, name), f"{name} (the series trains at lr 1e-3, wd 0.05)")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0 (the default is 1e-3), got {self.lr}.")
        if self.weight_decay < 0:
            raise ValueError(
                f"weight_decay must be >= 0 (the default is 0.05), got {self.weight_decay}."
            )
        if isinstance(self.warmup_steps, bool) or not isinstance(self.warmup_steps, int):
            raise ValueError(f"warmup_steps must be a whole number, got {self.warmup_steps!r}.")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}.")


def caption_batches(caption_ids: torch.Tensor, batch_size: int, steps: int, seed: int = 0):
    """Yield `steps` index tensors (batch_size,), each holding no caption twice: draw
    batch_size distinct captions at random, then one image of each at random."""
    caption_ids = torch.as_tensor(caption_ids)
    order = torch.argsort(caption_ids, stable=True)  # images grouped by caption
    present, counts = torch.unique(caption_ids, return_counts=True)
    if batch_size > len(present):
        raise ValueError(
            f"batch_size={batch_size} but only {len(present)} distinct captions: use a smaller "
            "batch."
        )
    offsets = torch.cumsum(counts, 0) - counts
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        pick = torch.randperm(len(present), generator=gen)[:batch_size]  # distinct captions
        r = torch.rand(batch_size, generator=gen, dtype=torch.float64)
        within = (r * counts[pick]).long()  # one of that caption's images
        yield order[offsets[pick] + within]


def train_clip(
    model: CLIPLite, dataset, cfg: ClipTrainConfig, progress=True, stop_after=None
) -> dict:
    """Train on a ShapesDataset's images and captions (no class label is used but through
    the captions) with AdamW, warm-up + cosine; `logit_scale` is clamped to [0, log 100]
    after every step. stop_after: stop after that many steps of the full schedule.
    Returns {"step_loss": [...], "logit_scale": [...], "seconds": float}."""
    device = model_device(model)
    labels = attribute_labels(dataset)["caption"]
    tokens = CAPTION_TOKENS.to(device)
    seed_everything(cfg.seed)
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": cfg.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=cfg.lr,
    )
    steps = cfg.steps if stop_after is None else min(cfg.steps, stop_after)
    hist = {"step_loss": [], "logit_scale": []}
    bar = progress_bar(steps, desc="training", unit="step", disable=not progress)
    start = time.perf_counter()
    model.train()
    batches = caption_batches(labels, cfg.batch_size, cfg.steps, cfg.seed)
    for step, idx in zip(range(steps), batches):
        x = dataset.batch(idx)[0].to(device)  # (B, 3, 32, 32)
        ids = tokens[labels[idx].to(device)]  # (B, T): each image's own caption
        lr = lr_at(step, cfg.steps, cfg)
        for group in opt.param_groups:
            group["lr"] = lr
        loss = model(x, ids)
        value = check_loss(loss, step + 1, lr)  # Diverged before the step spoils the weights
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, MAX_LOGIT_SCALE)
        hist["step_loss"].append(value)
        hist["logit_scale"].append(model.logit_scale.item())
        bar.update(1)
        if (step + 1) % 20 == 0:
            bar.set_postfix(loss=f"{value:.3f}", refresh=False)
    bar.close()
    model.eval()
    hist["seconds"] = time.perf_counter() - start
    return hist


# --------------------------------------------------------------------------------------
# Evaluation: zero-shot classification, retrieval
# --------------------------------------------------------------------------------------


@torch.no_grad()
def image_embeddings(model: CLIPLite, images, batch_size: int = 500) -> torch.Tensor:
    """Unit-length image embeddings (N, E), on the CPU. images: (N, 3, H, W) floats in
    [0, 1], a tensor or a numpy array."""
    check_count(batch_size, "batch_size")
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(images)
    if not isinstance(images, torch.Tensor):
        raise TypeError(
            f"images must be a tensor or numpy array (N, 3, H, W), got {type(images).__name__}."
        )
    if not images.is_floating_point():
        raise TypeError(
            f"images are {images.dtype}: pass floats in [0, 1], e.g. images.float() / 255 "
            "for uint8 pixels."
        )
    if images.ndim != 4 or len(images) == 0:
        raise ValueError(
            f"images must be (N, 3, H, W) with N >= 1, got shape {tuple(images.shape)} (one "
            "image: images[None])."
        )
    model.eval()
    device = model_device(model)
    return torch.cat([model.encode_image(x.to(device)).cpu() for x in images.split(batch_size)])


@torch.no_grad()
def text_embeddings(model: CLIPLite, texts) -> torch.Tensor:
    """Unit-length text embeddings (N, E), on the CPU."""
    model.eval()
    return model.encode_text(texts).cpu()


def shape_prompts(template: str = "ensemble") -> list[list[str]]:
    """Prompts per shape class: "ensemble" = every caption of that shape (6 colours x 9
    places = 54), or a template with {shape}, e.g. "a {shape}"."""
    if not isinstance(template, str):
        raise TypeError(f'template must be a string such as "a {{shape}}", got {template!r}.')
    if template == "ensemble":
        return [[c for c in ALL_CAPTIONS if c.split()[2] == s] for s in CLASSES]
    try:
        names = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError as e:
        raise ValueError(f"template {template!r} is not a valid format string ({e}).") from None
    others = sorted(names - {"shape"})
    if others:
        raise ValueError(
            f"template {template!r} has the field(s) {{{'}, {'.join(others)}}}: the only "
            'field allowed is {shape} (one prompt per shape class), e.g. "a {shape}"; or use '
            '"ensemble" for every caption of each shape.'
        )
    if "shape" not in names:
        raise ValueError(f'template {template!r} needs "{{shape}}", or use "ensemble".')
    return [[template.format(shape=s)] for s in CLASSES]


@torch.no_grad()
def zero_shot_weights(model: CLIPLite, prompts: list[list[str]]) -> torch.Tensor:
    """One unit vector per class (C, E): the mean of its prompts' embeddings, renormalised
    (CLIP's prompt ensembling)."""
    w = torch.stack([text_embeddings(model, p).mean(0) for p in prompts])
    return F.normalize(w, dim=-1)


def recall_at_k(sim: torch.Tensor, ks=(1, 5)) -> dict[int, float]:
    """For a square similarity (N queries, N candidates) whose diagonal holds the right
    answers: the share of queries with their answer among the top k."""
    sim = require_finite(sim, "sim (the similarities)")
    if sim.ndim != 2 or sim.shape[0] != sim.shape[1]:
        raise ValueError(f"sim must be square (N, N), got {tuple(sim.shape)}.")
    right = sim.diagonal()[:, None]
    rank = (sim > right).sum(1)  # candidates scored above the right one
    return {k: (rank < k).double().mean().item() for k in ks}


def unique_caption_subset(caption_ids: torch.Tensor) -> torch.Tensor:
    """Indices of the first image of every distinct caption, in caption order: a retrieval
    set where each query has exactly one right answer."""
    caption_ids = torch.as_tensor(caption_ids)
    ids, first = [], []
    seen = set()
    for i, c in enumerate(caption_ids.tolist()):
        if c not in seen:
            seen.add(c)
            ids.append(c)
            first.append(i)
    return torch.tensor(first)[torch.argsort(torch.tensor(ids))]


def evaluate_clip(model: CLIPLite, dataset) -> dict:
    """Zero-shot shape accuracy (prompt ensemble, and "a {shape}") on a ShapesDataset, and
    retrieval recall@1/5 both ways on its unique-caption subset."""
    labels = attribute_labels(dataset)
    img = image_embeddings(model, dataset.images.float() / 255)
    out = {}
    for name in ("ensemble", "a {shape}"):
        w = zero_shot_weights(model, shape_prompts(name))
        out[f"zero_shot_{name}"] = (img @ w.T).argmax(1).eq(labels["shape"]).double().mean().item()
    sub = unique_caption_subset(labels["caption"])
    txt = text_embeddings(model, CAPTION_TOKENS[labels["caption"][sub]])
    sim = img[sub] @ txt.T  # (n, n): image i vs caption j
    for name, s in (("image_to_text", sim), ("text_to_image", sim.T)):
        for k, v in recall_at_k(s).items():
            out[f"{name}_R@{k}"] = v
    out["retrieval_pairs"] = len(sub)
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in out.items()}


# --------------------------------------------------------------------------------------
# Files and the command
# --------------------------------------------------------------------------------------


def save_clip(model: CLIPLite, path, meta: dict | None = None, record: bool = False) -> Path:
    """Write the model (config, weights, meta) to `path` atomically; record=True also writes
    meta as the .json record beside it, in the same write. Non-finite weights are refused."""
    return save_model(model, path, FORMAT, asdict(model.cfg), meta, record, version=1)


def load_clip(path=None, device="cpu") -> tuple[CLIPLite, dict]:
    """The CLIP-lite model saved by `save_clip` (default: the shipped one), in eval mode,
    and its meta (the record)."""
    if path is None:
        try:
            path = data_file("clip_lite.pt")
        except FileNotFoundError:
            raise FileNotFoundError(
                f"clip_lite.pt is not in {DATA_DIR}: rebuild it with `{COMMAND}`, or restore "
                "the shipped one with `git checkout -- data/`."
            ) from None
    path = Path(path)
    payload = read_model_file(
        path,
        FORMAT,
        "CLIP-lite checkpoint",
        f"rebuild it with `{COMMAND}` (or save the model with helpers.studies.clip.save_clip)",
        [f.name for f in fields(ClipConfig)],
    )
    # Built on the meta device first: a file asking for a huge model, or whose weights do not
    # fit its config, is refused before anything is allocated.
    model = build_model(payload, lambda c: CLIPLite(ClipConfig(**c)), path, device)
    return model, payload["meta"]


def main(argv=None) -> dict:
    p = command_parser(
        "helpers.studies.clip",
        "Train CLIP-lite on shapes-in-clutter images and their generated captions; save the "
        "model and a .json record next to it (the defaults: data/clip_lite.pt).",
        "checkpoint path (.pt)",
    )
    for name, val in asdict(ClipTrainConfig()).items():
        p.add_argument(f"--{name.replace('_', '-')}", type=type(val), default=val)
    a, out = parse_command(p, argv, ".pt")
    try:
        tcfg = ClipTrainConfig(**{k: getattr(a, k) for k in asdict(ClipTrainConfig())})
    except ValueError as e:
        p.error(str(e))
    with claim_output(out, p):  # held from here; a diverged run exits 1, writing nothing
        train_ds, test_ds = ShapesDataset("train"), ShapesDataset("test")
        seed_everything(tcfg.seed)
        model = CLIPLite()
        hist = train_clip(model, train_ds, tcfg)
        scores = evaluate_clip(model, test_ds)
        meta = {
            "scores": scores,
            "train_seconds": round(hist["seconds"], 1),
            "final_logit_scale": round(model.logit_scale.exp().item(), 3),
            "parameters": sum(p.numel() for p in model.parameters()),
            "config": asdict(model.cfg),
            "train_config": asdict(tcfg),
            "batches": "each batch holds batch_size distinct captions, one random image of each "
            "(helpers.studies.clip.caption_batches): no false negatives in the loss",
            "dataset": "shapes-in-clutter (helpers.data), seed 0: 20k train images with their "
            "captions; scored on the 2k test images",
            **provenance("helpers.studies.clip", argv),
            "step_loss": hist["step_loss"],
        }
        save_clip(model, out, meta, record=True)  # the .pt and its .json record, one write
        print(f"{scores} ({meta['train_seconds']:.0f} s) -> {out}")
        return meta


if __name__ == "__main__":
    main()

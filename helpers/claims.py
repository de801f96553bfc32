"""The claims index: every claim of the brief, what the series found, and where.

One source of truth for the table that notebook 00 shows (`show_claims()`) and that README.md
holds between `<!-- claims:start -->` and `<!-- claims:end -->`. After changing a row,
rewrite the README's copy with

    python -m helpers.claims            # or --check: exit 1 if the README's copy is stale

A row's number must be one that its notebook prints (tests/test_claims.py reads the
committed outputs); a claim no notebook has tested yet says "not yet tested" and names the
notebook planned for it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NamedTuple

from .checkpoint import atomic_write

VERDICTS = (
    "holds",
    "partly",
    "does not hold here",
    "not reproduced at this scale",
    "not yet tested",
)
# what each verdict means (README's "The claims" section explains the same words)
VERDICT_MEANINGS = {
    "holds": "the claim is true of this series' model, by a test that could have failed",
    "partly": "some of the claim is true here and some is not; the number says which part",
    "does not hold here": "the test ran and the claim is false for this model at this scale",
    "not reproduced at this scale": "a paper's recipe did not give its result on this small "
    "model and data (the recipe failed here, which says nothing against the paper)",
    "not yet tested": "no notebook tests it yet",
}
NO_MEASUREMENT = "no published measurement found"
START, END = "<!-- claims:start -->", "<!-- claims:end -->"


class Claim(NamedTuple):
    claim: str  # in the brief's words
    verdict: str  # one of VERDICTS
    number: str  # the number that decides it, as the notebook prints it
    where: str  # notebook and section ("planned: ..." when not yet tested)
    at_scale: str = ""  # what real (large, pretrained) ViTs show, or NO_MEASUREMENT
    source: str = ""  # the paper and its table, figure or section ("" with NO_MEASUREMENT)


CLAIMS = [
    Claim(
        "a learnable embedding added to the beginning of the patch sequence",
        "holds",
        "one (1, 1, 64) parameter; sequence (8, 65, 64) with CLS at index 0, equal to "
        "`model.embed(x)`",
        "01 §5 Prepending CLS",
        at_scale=(
            "In ViT, as in BERT, a learnable embedding is prepended to the embedded patches, and "
            "its output state is the image representation: a design, the same at every scale."
        ),
        source="Dosovitskiy et al. 2021 (ICLR), §3.1, Eq. 1",
    ),
    Claim(
        "acts as a global information aggregator",
        "holds",
        "CLS blind to the patches: 16.7% test accuracy (chance 16.7%) vs 98.8%",
        "03 §5 Cut the roads",
        at_scale=(
            "Supervision reaches only the class token, so attention must carry the patches to it "
            "(DeiT). In ImageNet ViT-B/16 the CLS token passes mostly through the skip connection"
            " in the first half of the network and gathers in the second half."
        ),
        source="Touvron et al. 2021 (ICML), §3; Raghu et al. 2021 (NeurIPS), §6, Fig. 7",
    ),
    Claim(
        "the final CLS token representation is used for classification",
        "holds",
        "the head is W LN(CLS) + b, 390 parameters; by hand = `model(x)`",
        "04 §1 The head reads one token",
        at_scale=(
            "The head reads the output state of the class token: an MLP with one hidden layer in "
            "pre-training, one linear layer in fine-tuning; DeiT uses a linear classifier. A "
            "design, the same at every scale."
        ),
        source="Dosovitskiy et al. 2021 (ICLR), §3.1, Eq. 4; Touvron et al. 2021 (ICML), §5.1",
    ),
    Claim(
        "the CLS token receives its own positional encoding",
        "partly",
        "it gets slot 0, but that slot gets the same gradient as the token (redundant); "
        "cosine with patch slots from -0.27 to 0.46",
        "02 §4 What the learned table encodes",
        at_scale=(
            "ViT's learned table has N+1 rows, one for the class token. Position embeddings "
            "matter at scale (ViT-B/16, ImageNet 5-shot linear: none 0.614, 1-D 0.642); no "
            "measurement of the CLS row alone found."
        ),
        source="Dosovitskiy et al. 2021 (ICLR), §3.1, Eq. 1; App. D.4, Table 8",
    ),
    Claim(
        "starts as a randomly initialized learnable parameter (`torch.randn`); use truncated "
        "normal",
        "partly",
        "at step 0, randn: CLS 9.70x a patch row, block 1 moves it by 0.020 of its norm; std "
        "0.02: 0.25x, 0.745. After training, accuracy % after 250 steps (5 seeds): std 0.02"
        " 85.1 ± 2.9, zeros 81.0 ± 4.1, std 1e-6 69.9 ± 27.4, randn 77.5 ± 7.1; std 0.02 − "
        "randn +7.6 [-2.0, +17.2] (paired, 95% CI): no detectable difference",
        "01 §4; 08 §1 Initialization, after training",
        at_scale="no published measurement found",
    ),
    Claim(
        "attends to all patches to gather global information",
        "partly",
        "it reads patches, not itself, but mostly the object: 84% of its attention in layer 2 "
        "(uniform: 19%)",
        "03 §3 Does CLS look at the object?",
        at_scale=(
            "Attention rollout from the output token of ViT-L/16 covers the regions relevant to "
            "the class (qualitative). Large, long-trained ViTs (DeiT-III, OpenCLIP, DINOv2) also "
            "put peaky attention on a few high-norm background tokens; DINO v1 shows none."
        ),
        source=(
            "Dosovitskiy et al. 2021 (ICLR), Fig. 6, App. D.8; Darcet et al. 2024 (ICLR), §2, "
            "Fig. 2"
        ),
    ),
    Claim(
        "is attended by patches allowing bidirectional information flow",
        "does not hold here",
        "patches give CLS 0.003-0.009 of their attention (uniform 0.015); cutting that road: "
        "98.9% vs 98.8%",
        "03 §4-5 The CLS column; Cut the roads",
        at_scale=(
            "No direct measurement of how much patches attend to CLS found. CaiT removes that "
            "road by design (the class token joins only in the last class-attention layers, "
            "patches never read it) and CaiT-M48 reaches 86.5% on ImageNet."
        ),
        source=(
            "Touvron et al. 2021 (ICCV, CaiT), §3; accuracy from the facebookresearch/deit README"
            " (code)"
        ),
    ),
    Claim(
        "progressively refines its representation through multiple layers",
        "holds",
        "a linear probe reads the class from CLS after each block: 0.16 -> 0.88 -> 0.96 -> "
        "0.97 -> 0.98 (input, then blocks 0-3); the logit lens catches up later: 0.58 -> 0.98",
        "05 §5 Is the CLS token refined through the layers?",
        at_scale=(
            "Linear probes from each layer improve with depth; JFT-300M ViT-L/16 and ViT-H/14 "
            "beat ImageNet-only models by about 30 points already in middle layers, so much of "
            "the middle-layer quality comes from data scale. Class representations build up block"
            " by block (Vilas et al., abstract)."
        ),
        source="Raghu et al. 2021 (NeurIPS), §8, Fig. 13; Vilas et al. 2023 (NeurIPS), abstract",
    ),
    Claim(
        "Flexibility: works for images of any size",
        "partly",
        "48x48 with a resampled position table: 0.9845 on a canvas, 0.4900 upscaled "
        "(0.9880 at 32x32); with no table at all 0.9840 on the canvas",
        "02 §5 Images of another size",
        at_scale=(
            "At a higher resolution ViT keeps the patch size, interpolates its pre-trained "
            "position table in 2-D and then fine-tunes at the new size: DeiT-B 81.8% at 224 px, "
            "83.1% at 384 px. Not zero-shot resizing."
        ),
        source="Dosovitskiy et al. 2021 (ICLR), §3.2; Touvron et al. 2021 (ICML), §3, Table 3",
    ),
    Claim(
        "Efficiency: single token for classification vs. pooling all patches",
        "does not hold here",
        "CLS adds a token to every layer: 65 instead of 64 (+1.6%); the mean over 64 patches "
        "costs next to nothing",
        "04 §4 Do we need a CLS token?",
        at_scale=(
            "The cost at scale is hardware padding, not the token: 256 patches + 1 class token "
            "are padded to a multiple of 128 on TPUs (up to 50% more memory); class token, GAP "
            "and MAP heads perform similarly, so Zhai et al. use MAP."
        ),
        source="Zhai et al. 2022 (CVPR), §3.2, Fig. 5",
    ),
    Claim(
        "Interpretability: attention weights show which patches influence decisions",
        "partly",
        "deleting the patches a map ranks first (area under the accuracy curve, lower is "
        "better): raw attention 0.34, rollout 0.23, gradient rollout 0.26, vs random 0.71; "
        "no map beats the object mask 0.21 (mask - rollout -0.019, 95% CI -0.053 to +0.015, "
        "paired over 200 images)",
        "05 §7 Is attention an explanation?",
        at_scale=(
            "ImageNet ViT-B perturbation tests (positive, lower is better): raw attention 23.99, "
            "rollout 20.05, the authors' LRP-and-gradient relevance 17.03; values read from a "
            "reproduction that copies the paper's table, not from the paper itself. Attention "
            "alone is no explanation (Jain and Wallace 2019, NLP)."
        ),
        source="Chefer, Gur and Wolf 2021 (CVPR), §5, perturbation tests",
    ),
    Claim(
        "Consistency: aligns with NLP transformer architectures",
        "partly",
        "a BERT-style text encoder's [CLS] computed with the ViT's own blocks: max difference "
        "0.0e+00; it gathers the caption (probes of shape, colour, place 100.0% after the "
        "blocks, 14.2% at most before); but not every NLP transformer reads a [CLS]",
        "07 §13 The text side: the same summary token as in NLP?; 07 §14 Verdicts",
        at_scale=(
            "ViT's [class] token is borrowed from BERT's, but CLIP's own text encoder is causal "
            "and reads its end-of-text token, not a leading [CLS]. No measurement of the "
            "consistency itself found."
        ),
        source=(
            "Dosovitskiy et al. 2021 (ICLR), §3.1; Radford et al. 2021 (ICML), §2.4 and "
            "openai/CLIP model code"
        ),
    ),
    Claim(
        "alternatives: global average pooling, direct patch classification, learnable pooling",
        "partly",
        "validation accuracy % over 5 seeds: CLS 85.1 ± 2.9, GAP with no CLS token "
        "84.6 ± 2.4, MAP with no CLS token 53.0 ± 29.3 (75.2 ± 15.0 with twice the steps); "
        "direct patch classification 75.5 ± 12.1 vs CLS 77.8 ± 3.8 (test %, 5 seeds, 06's "
        "budget: paired difference -2.3, 95% CI -19.1 to +14.5; one patch seed at 54.5)",
        "04 §4-5 Do we need a CLS token? Why does MAP lag?; 06 §5 Classifying every patch",
        at_scale=(
            "GAP first did much worse than CLS in ViT; a learning rate of its own closes the gap."
            " Class token, GAP and MAP heads perform similarly at scale; GAP-trained ViTs "
            "localize less in higher layers."
        ),
        source=(
            "Dosovitskiy et al. 2021 (ICLR), App. D.3, Fig. 9; Zhai et al. 2022 (CVPR), §3.2; "
            "Raghu et al. 2021 (NeurIPS), §7, Fig. 10"
        ),
    ),
    Claim(
        "early layers: broad, uniform attention across patches",
        "does not hold here",
        "the early CLS row is the focused one: entropy early 1.09 vs final 2.29 nats "
        "(uniform 4.17); every head's distance within 1.2 px of uniform (16.5 px)",
        "05 §2 How broad is each layer's attention?",
        at_scale=(
            "In ViT-L/16 some heads of the lowest layers already attend to most of the image "
            "while others stay local, and attention distance grows with depth. Local early heads "
            "need large pre-training data: ImageNet-only ViTs learn few of them."
        ),
        source=(
            "Dosovitskiy et al. 2021 (ICLR), Fig. 7 (right) and App. D.7; Raghu et al. 2021 "
            "(NeurIPS), Fig. 4"
        ),
    ),
    Claim(
        "middle layers: focused attention on semantic regions",
        "partly",
        "CLS share on the object: middle 0.82, but early 0.81 already (final 0.63, uniform "
        "0.19); one-object images have no parts to tell apart",
        "05 §2 How broad is each layer's attention?",
        at_scale=(
            "No layer-wise measure of CLS attention on semantic regions found. The last-layer "
            "heads of DINO ViT-S/8 attend to different objects or parts (qualitative), on natural"
            " images with many parts."
        ),
        source="Caron et al. 2021 (ICCV), Fig. 3; Dosovitskiy et al. 2021 (ICLR), Fig. 6",
    ),
    Claim(
        "final layers: task-specific attention patterns",
        "partly",
        "the last block discards part of what the task does not need, not all: probes on CLS "
        "after it vs the best earlier block, colour 0.42 (drop +0.09, 95% CI +0.07 to +0.11), "
        "position R² 0.17 (drop +0.04), size R² 0.65 (drop +0.02), class 0.99 (kept); the "
        "rule asks a drop of 0.05",
        "05 §5 Are the final layers task-specific?",
        at_scale=(
            "No test of task-specific final CLS layers found. In large contrastively trained ViTs"
            " the best general features sit in intermediate layers, not at the output (Perception"
            " Encoder, abstract); with 3% of JFT, lower layers match the full-data model while "
            "higher layers need more data."
        ),
        source="Bolya et al. 2025 (NeurIPS), abstract; Raghu et al. 2021 (NeurIPS), §8, Fig. 12",
    ),
    Claim(
        "DINO: CLS token for self-supervised learning",
        "not reproduced at this scale",
        "over 3 seeds, DINO-lite's CLS k-NN shape 18.2 ± 1.5% vs 27.3 ± 2.2% for its own "
        "random init (lower); best-head Jaccard 7.6 ± 3.5 vs 8.4 ± 2.9 (no detectable "
        "difference); seed 0 learned colour instead (k-NN colour 59.5% vs 42.9%)",
        "07 §2 Two ways to collapse; 07 §3 What did the CLS token learn?; 07 §5 The paper's "
        "Jaccard test; 07 §14 Verdicts",
        at_scale=(
            "DINO ViT-S/16 on ImageNet: k-NN 74.5%, linear 77.0%; without the momentum teacher it"
            " collapses (k-NN 0.1%). Jaccard of the last-layer CLS attention with VOC12 masks: "
            "DINO 45.9, supervised 27.3, random weights 22.0. The recipe trains on ImageNet with "
            "multi-crop and colour jitter."
        ),
        source="Caron et al. 2021 (ICCV), Table 2, Table 7, and the table under Fig. 4 (§4.2.2)",
    ),
    Claim(
        "CLIP: CLS token represents entire image, aligned with text",
        "holds",
        "the image CLS alone, trained on captions only: zero-shot shapes 96.0% (supervised "
        "98.8%), retrieval R@1 96.8% / 99.1%; probes of shape/colour/place 97.0/95.7/99.8% "
        "(supervised CLS 98.4/42.9/24.6%)",
        "07 §10-12 Zero-shot classification; Retrieval; What does the image CLS token know?; "
        "07 §14 Verdicts",
        at_scale=(
            "CLIP's best model (ViT-L/14@336px), trained on 400M image-text pairs, reaches 76.2% "
            "zero-shot top-1 on ImageNet; its image embedding is the projected CLS output. An "
            "80-prompt ensemble adds 3.5 points."
        ),
        source="Radford et al. 2021 (ICML), Table 1, §3.1.3-3.1.4",
    ),
    Claim(
        "DeiT: uses both CLS and distillation tokens",
        "does not hold here",
        "the teacher adds no detectable accuracy with few images (test %, teacher − labels, "
        "5 seeds, 95% CI: 250 images +0.5 [-4.7, +5.7]; 500 +0.5 [-0.4, +1.5]; 1000 +2.8 "
        "[-2.1, +7.7]; 2000 +1.6 [-10.6, +13.8]); with all 20,000 images the second token "
        "works as a read-out (CLS head 97.5, distillation head 97.7) but the student is no "
        "better than no teacher (98.4)",
        "06 §2 A CNN teacher; Where a teacher can help: few images",
        at_scale=(
            "DeiT-B, ImageNet top-1, RegNetY-16GF teacher (82.9%): no distillation 81.8, class "
            "head 83.0, distillation head 83.1, both heads 83.4 (softmaxes added). Learned tokens: cosine 0.06, "
            "outputs 0.93; two class tokens on one label reach 0.999 and add nothing. The gain "
            "needs a teacher whose labels differ from the true ones."
        ),
        source="Touvron et al. 2021 (ICML), §4 and §5.2, Table 2 and Table 3",
    ),
    Claim(
        "Learning rate: often benefits from different LR than patches",
        "does not hold here",
        "CLS token and slot at 0.1x / 1x / 10x the rate: 83.3 ± 3.8 / 85.8 ± 3.4 / 82.6 ± "
        "2.9 % (3 seeds); 0.1x − 1x -2.5 [-7.1, +2.0], 10x − 1x -3.2 [-6.5, +0.1]; without "
        "decay on the token: no change beyond the seeds’ spread",
        "08 §2 A learning rate of its own?",
        at_scale=(
            "No published measurement of a separate learning rate for the CLS token found. "
            "Practice: timm and MAE exempt cls_token and pos_embed from weight decay, and layer-"
            "wise LR decay puts them with the patch embedding (group 0)."
        ),
        source=(
            "timm VisionTransformer.no_weight_decay and group_matcher (code, 2024); He et al. "
            "2022 (CVPR, MAE) util/lr_decay.py (code)"
        ),
    ),
    Claim(
        "Regularization: apply dropout to CLS token output",
        "does not hold here",
        "2000 images, 25 passes, validation % at drop_rate 0 / 0.1 / 0.3: 93.9 ± 0.5 / 92.0 "
        "± 1.5 / 91.9 ± 1.2 (3 seeds); 0.3 − 0 -2.0 [-5.7, +1.8]: no detectable difference",
        "08 §3 Dropout on the CLS output",
        at_scale="no published measurement found",
    ),
    Claim(
        "Fine-tuning: CLS token adapts quickly to new tasks",
        "partly",
        "frozen CLS, converged probe: round or angular 99.2%, colour 44.6% (chance 16.7, "
        "target 80); colour with the token tuned from the probe 46.8 ± 0.2 %, full "
        "fine-tuning 92.3%",
        "08 §4 Fine-tuning: does the CLS token adapt quickly?",
        at_scale="no published measurement found",
    ),
    Claim(
        "can be used for any global task (detection, segmentation with modifications)",
        "partly",
        "R² CLS − GAP: size +0.07 [-0.06, +0.20], position +0.36 [+0.15, +0.57]; mask IoU: "
        "patch tokens 0.85 ± 0.01, CLS balanced 4x steps 0.57 ± 0.12, frozen probes 0.68 vs "
        "0.21",
        "08 §5 Can be used for any global task",
        at_scale=(
            "Detection replaces the one [CLS] token: YOLOS adds 100 learnable [DET] tokens "
            "(YOLOS-Base, ImageNet-1k pre-training only: 42.0 box AP on COCO). CLS-trained ViTs "
            "keep spatial information in their higher-layer patch tokens."
        ),
        source=(
            "Fang et al. 2021 (NeurIPS), abstract and §2.1; Raghu et al. 2021 (NeurIPS), §7, Fig. 9"
        ),
    ),
    Claim(
        "only sees patch embeddings, not raw pixels",
        "holds",
        "its input to block 1 is the same for 12 different images (spread 0.000); what it "
        "knows arrives through attention",
        "01 §6 Before attention, CLS knows nothing",
        at_scale=(
            "By construction in ViT: the class token is the same learned vector for every image "
            "and receives image content only through self-attention; the same at every scale."
        ),
        source="Dosovitskiy et al. 2021 (ICLR), §3.1, Eq. 1",
    ),
    Claim(
        '"CLS token is necessary for ViT" is a misconception: alternative pooling strategies '
        "exist and can work well",
        "holds",
        "GAP with no CLS token 84.6 ± 2.4 vs CLS 85.1 ± 2.9 (validation accuracy % over 5 seeds)",
        "04 §4 Do we need a CLS token?",
        at_scale=(
            "With a learning rate of its own, GAP with no class token works as well as the class "
            "token in ViT; class token, GAP and MAP heads perform similarly, and Zhai et al. keep"
            " MAP."
        ),
        source="Dosovitskiy et al. 2021 (ICLR), App. D.3, Fig. 9; Zhai et al. 2022 (CVPR), §3.2",
    ),
]


def check_claims(claims=None) -> None:
    """Refuse a malformed row, with the fix."""
    for i, c in enumerate(CLAIMS if claims is None else claims):
        if c.verdict not in VERDICTS:
            raise ValueError(f"claim {i + 1}: verdict {c.verdict!r} is not one of {VERDICTS}.")
        if (c.verdict == "not yet tested") != (not c.number):
            raise ValueError(
                f"claim {i + 1}: a tested claim needs the number that decides it, and an "
                "untested one has none."
            )
        if c.verdict == "not yet tested" and not c.where.startswith("planned:"):
            raise ValueError(f"claim {i + 1}: name the planned notebook ('planned: NN ...').")
        if bool(c.at_scale) and c.at_scale != NO_MEASUREMENT and not c.source:
            raise ValueError(f"claim {i + 1}: an at-scale finding needs its source.")
        if "|" in "".join(c):
            raise ValueError(f"claim {i + 1}: '|' would break the Markdown table.")


def claims_table(claims=None) -> str:
    """The claims index as a Markdown table, in the brief's order."""
    claims = CLAIMS if claims is None else claims
    check_claims(claims)
    lines = [
        "| # | claim (the brief's words) | verdict | the number that decides it | where "
        "| in real ViTs |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for i, c in enumerate(claims, 1):
        lines.append(
            f"| {i} | {c.claim} | **{c.verdict}** | {c.number or '–'} | {c.where} "
            f"| {at_scale_text(c)} |"
        )
    return "\n".join(lines)


def at_scale_text(c: Claim) -> str:
    """The "in real ViTs" cell: the finding, then its source in parentheses."""
    if not c.at_scale:
        return "–"
    return f"{c.at_scale} ({c.source})" if c.source else c.at_scale


def show_claims():
    """The table for a notebook (IPython Markdown)."""
    from IPython.display import Markdown

    return Markdown(claims_table())


class VerdictTable:
    """A notebook's verdicts beside the index's "in real ViTs" column: Markdown where a
    renderer shows it (JupyterLab, GitHub, the site), plain text everywhere else."""

    def __init__(self, rows):
        self.rows = rows  # (claim number, verdict, our number)

    def _cells(self):
        for n, verdict, ours in self.rows:
            c = CLAIMS[n - 1]
            yield n, c.claim, verdict, ours, at_scale_text(c)

    def _repr_markdown_(self) -> str:
        lines = [
            "| # | claim | verdict | here | in real ViTs |",
            "| --- | --- | --- | --- | --- |",
        ]
        for n, claim, verdict, ours, scale in self._cells():
            lines.append(f"| {n} | {claim} | **{verdict}** | {ours} | {scale} |")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return "\n\n".join(
            f"{n}. {claim} -> {verdict.upper()}\n   here: {ours}\n   in real ViTs: {scale}"
            for n, claim, verdict, ours, scale in self._cells()
        )


def verdict_table(rows) -> VerdictTable:
    """The verdict section's table: `rows` maps a claim's number (1-25) to (verdict, the
    number that decides it here, as text). Each verdict must be a word of VERDICTS and the
    one the index holds, so that the notebook and the index cannot drift apart."""
    out = []
    for n, (verdict, ours) in dict(rows).items():
        if not isinstance(n, int) or not 1 <= n <= len(CLAIMS):
            raise ValueError(f"claim number {n!r}: the index numbers its claims 1-{len(CLAIMS)}.")
        if verdict not in VERDICTS:
            raise ValueError(f"claim {n}: verdict {verdict!r} is not one of {VERDICTS}.")
        if verdict != CLAIMS[n - 1].verdict:
            raise ValueError(
                f"claim {n}: this run's verdict is {verdict!r} but the index says "
                f"{CLAIMS[n - 1].verdict!r}: update helpers/claims.py (then python -m "
                "helpers.claims) or find what changed."
            )
        if "|" in str(ours):
            raise ValueError(f"claim {n}: '|' would break the Markdown table.")
        out.append((n, verdict, str(ours)))
    return VerdictTable(out)


def with_table(text: str, table: str | None = None) -> str:
    """`text` (the README) with the table between the START and END markers replaced."""
    if text.count(START) != 1 or text.count(END) != 1 or text.index(START) > text.index(END):
        raise ValueError(f"the README must hold {START} once, then {END} once.")
    head, rest = text.split(START)
    _, tail = rest.split(END)
    return f"{head}{START}\n{table or claims_table()}\n{END}{tail}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m helpers.claims", description="Write the claims index into README.md."
    )
    p.add_argument("--readme", default=str(Path(__file__).resolve().parent.parent / "README.md"))
    p.add_argument("--check", action="store_true", help="only check; exit 1 if stale")
    a = p.parse_args(argv)
    path = Path(a.readme)
    text = path.read_text(encoding="utf-8")
    new = with_table(text)
    if a.check:
        if new != text:
            print(f"{path}: the claims table is stale; run `python -m helpers.claims`.")
            return 1
        return 0
    if new != text:
        atomic_write(path, new.encode("utf-8"))
        print(f"{path}: claims table rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main())

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

VERDICTS = ("holds", "partly", "does not hold here", "not yet tested")
START, END = "<!-- claims:start -->", "<!-- claims:end -->"


class Claim(NamedTuple):
    claim: str  # in the brief's words
    verdict: str  # one of VERDICTS
    number: str  # the number that decides it, as the notebook prints it
    where: str  # notebook and section ("planned: ..." when not yet tested)


CLAIMS = [
    Claim(
        "a learnable embedding added to the beginning of the patch sequence",
        "holds",
        "one (1, 1, 64) parameter; sequence (8, 65, 64) with CLS at index 0, equal to "
        "`model.embed(x)`",
        "01 §5 Prepending CLS",
    ),
    Claim(
        "acts as a global information aggregator",
        "holds",
        "CLS blind to the patches: 16.7% test accuracy (chance 16.7%) vs 98.8%",
        "03 §5 Cut the roads",
    ),
    Claim(
        "the final CLS token representation is used for classification",
        "holds",
        "the head is W LN(CLS) + b, 390 parameters; by hand = `model(x)`",
        "04 §1 The head reads one token",
    ),
    Claim(
        "the CLS token receives its own positional encoding",
        "partly",
        "it gets slot 0, but that slot gets the same gradient as the token (redundant); "
        "cosine with patch slots from -0.27 to 0.46",
        "02 §4 What the learned table encodes",
    ),
    Claim(
        "starts as a randomly initialized learnable parameter (`torch.randn`); use truncated "
        "normal",
        "partly",
        "at step 0, randn: CLS 9.70x a patch row, block 1 moves it by 0.020 of its norm; std "
        "0.02: 0.25x, 0.745. After training, accuracy % after 250 steps (5 seeds): std 0.02"
        " 85.1 ± 2.9, zeros 81.0 ± 4.1, std 1e-6 69.9 ± 27.4, randn 77.5 ± 7.1",
        "01 §4; 08 §1 Initialization, after training",
    ),
    Claim(
        "attends to all patches to gather global information",
        "partly",
        "it reads patches, not itself, but mostly the object: 84% of its attention in layer 2 "
        "(uniform: 19%)",
        "03 §3 Does CLS look at the object?",
    ),
    Claim(
        "is attended by patches allowing bidirectional information flow",
        "does not hold here",
        "patches give CLS 0.003-0.009 of their attention (uniform 0.015); cutting that road: "
        "98.9% vs 98.8%",
        "03 §4-5 The CLS column; Cut the roads",
    ),
    Claim(
        "progressively refines its representation through multiple layers",
        "holds",
        "a linear probe reads the class from CLS after each block: 0.16 -> 0.88 -> 0.96 -> "
        "0.97 -> 0.98 (input, then blocks 0-3)",
        "05 §5 Is the CLS token refined through the layers?",
    ),
    Claim(
        "Flexibility: works for images of any size",
        "partly",
        "48x48 with a resampled position table: 0.9845 on a canvas, 0.4900 upscaled "
        "(0.9880 at 32x32); with no table at all 0.9840 on the canvas",
        "02 §5 Images of another size",
    ),
    Claim(
        "Efficiency: single token for classification vs. pooling all patches",
        "does not hold here",
        "CLS adds a token to every layer: 65 instead of 64 (+1.6%); the mean over 64 patches "
        "costs next to nothing",
        "04 §4 Do we need a CLS token?",
    ),
    Claim(
        "Interpretability: attention weights show which patches influence decisions",
        "partly",
        "deleting the patches a map ranks first (area under the accuracy curve, lower is "
        "better): raw attention 0.34, rollout 0.23, gradient rollout 0.26, vs random 0.71; "
        "the object mask 0.21 beats every map",
        "05 §7 Is attention an explanation?",
    ),
    Claim(
        "Consistency: aligns with NLP transformer architectures",
        "partly",
        "a BERT-style text encoder's [CLS] computed with the ViT's own blocks: max difference "
        "0.0e+00; it gathers the caption (probes of shape, colour, place 100.0% after the "
        "blocks, 14.2% at most before); but CLIP's own text encoder reads its end-of-text "
        "token, and GPT-style models have no [CLS]",
        "07 §13 The text side: the same summary token as in NLP?",
    ),
    Claim(
        "alternatives: global average pooling, direct patch classification, learnable pooling",
        "partly",
        "validation accuracy % over 5 seeds: CLS 85.1 ± 2.9, GAP with no CLS token "
        "84.6 ± 2.4, MAP with no CLS token 53.0 ± 29.3 (75.2 ± 15.0 with twice the steps); "
        "direct patch classification 82.4 ± 1.6 vs CLS 77.5 ± 5.4 (test %, 3 seeds, 06's budget)",
        "04 §4-5 Do we need a CLS token? Why does MAP lag?; 06 §5 Classifying every patch",
    ),
    Claim(
        "early layers: broad, uniform attention across patches",
        "does not hold here",
        "the early CLS row is the focused one: entropy early 1.09 vs final 2.29 nats "
        "(uniform 4.17); every head's distance within 1.2 px of uniform (16.5 px)",
        "05 §2 How broad is each layer's attention?",
    ),
    Claim(
        "middle layers: focused attention on semantic regions",
        "partly",
        "CLS share on the object: middle 0.82, but early 0.81 already (final 0.63, uniform "
        "0.19); one-object images have no parts to tell apart",
        "05 §2 How broad is each layer's attention?",
    ),
    Claim(
        "final layers: task-specific attention patterns",
        "does not hold here",
        "the head reads the class from CLS before the last block: logit lens 0.92 before, "
        "0.98 after; the 8-block model: 0.98 at half depth",
        "05 §5 Is the CLS token refined through the layers?; 05 §4 Does it depend on the model?",
    ),
    Claim(
        "DINO: CLS token for self-supervised learning",
        "partly",
        "trained with no label, our small ViT's CLS token learns colour, not shape: k-NN "
        "colour 59.5%, shape 16.4% (supervised 98.8%); its last-layer attention overlaps the "
        "objects less than the supervised model's: Jaccard 5.4 vs 24.8 (paper, VOC12: 45.9 vs "
        "27.3)",
        "07 §3 What did the CLS token learn?; 07 §5 The paper's Jaccard test",
    ),
    Claim(
        "CLIP: CLS token represents entire image, aligned with text",
        "holds",
        "the image CLS alone, trained on captions only: zero-shot shapes 96.0% (supervised "
        "98.8%; CLIP ViT-L/14 on ImageNet 76.2%), retrieval R@1 96.8% / 99.1%; probes of "
        "shape/colour/place 97.0/95.7/99.8% (supervised CLS 98.4/42.8/24.6)",
        "07 §10-12 Zero-shot classification; Retrieval; What does the image CLS token know?",
    ),
    Claim(
        "DeiT: uses both CLS and distillation tokens",
        "partly",
        "the second token works as a read-out (test %: CLS head 97.5, distillation head 97.7, "
        "both 97.6; DeiT-B 83.0 / 83.1 / 83.4) but learns nothing measurable from a teacher "
        "that agrees with the labels: no teacher 98.4; CLS and DIST end alike, cosine 0.99 "
        "(DeiT-B 0.93)",
        "06 §2-3 A CNN teacher; Do the two tokens become the same token?",
    ),
    Claim(
        "Learning rate: often benefits from different LR than patches",
        "does not hold here",
        "CLS token and slot at 0.1x / 1x / 10x the rate: 83.3 ± 3.8 / 85.8 ± 3.4 / 82.6 ± "
        "2.9 %; best base rate CLS 0.003, GAP 0.003",
        "08 §2 A learning rate of its own?",
    ),
    Claim(
        "Regularization: apply dropout to CLS token output",
        "does not hold here",
        "2000 images, 25 passes: validation % at drop_rate 0 / 0.1 / 0.3 93.8 ± 0.5 / 92.0 "
        "± 1.5 / 91.9 ± 1.2; train - validation gap 5.6 / 6.4 / 5.5 points",
        "08 §3 Dropout on the CLS output",
    ),
    Claim(
        "Fine-tuning: CLS token adapts quickly to new tasks",
        "partly",
        "round or angular: linear probe at 90% in 30 steps or fewer, tuning the CLS token "
        "too: 99.1% vs 98.2%; colour: head + CLS token 21.2% vs full fine-tuning 92.3%",
        "08 §4 Fine-tuning: does the CLS token adapt quickly?",
    ),
    Claim(
        "can be used for any global task (detection, segmentation with modifications)",
        "partly",
        "R² CLS vs GAP: size 0.66 vs 0.59, position 0.64 vs 0.28, count 0.01 vs 0.00; mask "
        "IoU from the patch tokens 0.85, from CLS alone 0.02; CLS + mean vs CLS, colour "
        "probe 0.53 vs 0.39",
        "08 §5 Can be used for any global task",
    ),
    Claim(
        "only sees patch embeddings, not raw pixels",
        "holds",
        "its input to block 1 is the same for 12 different images (spread 0.000); what it "
        "knows arrives through attention",
        "01 §6 Before attention, CLS knows nothing",
    ),
    Claim(
        '"CLS token is necessary for ViT" is a misconception: alternative pooling strategies '
        "exist and can work well",
        "holds",
        "GAP with no CLS token 84.6 ± 2.4 vs CLS 85.1 ± 2.9 (validation accuracy % over 5 seeds)",
        "04 §4 Do we need a CLS token?",
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
        if "|" in "".join(c):
            raise ValueError(f"claim {i + 1}: '|' would break the Markdown table.")


def claims_table(claims=None) -> str:
    """The claims index as a Markdown table, in the brief's order."""
    claims = CLAIMS if claims is None else claims
    check_claims(claims)
    lines = [
        "| # | claim (the brief's words) | verdict | the number that decides it | where |",
        "| --- | --- | --- | --- | --- |",
    ]
    for i, c in enumerate(claims, 1):
        lines.append(f"| {i} | {c.claim} | **{c.verdict}** | {c.number or '–'} | {c.where} |")
    return "\n".join(lines)


def show_claims():
    """The table for a notebook (IPython Markdown)."""
    from IPython.display import Markdown

    return Markdown(claims_table())


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

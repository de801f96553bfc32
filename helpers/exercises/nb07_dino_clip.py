"""The exercises of notebook 07_dino_and_clip: DINO's teacher targets, centred and sharpened;
CLIP's symmetric InfoNCE loss with a learned temperature.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .core import Exercise, call_for_tensor, expect, name_the_slip


def _check_teacher_targets(teacher_targets) -> None:
    g = torch.Generator().manual_seed(7)
    t = torch.randn(5, 8, generator=g) * 0.3 + torch.linspace(0, 1, 8)  # (B, K)
    c = torch.randn(8, generator=g) * 0.3  # (K,)
    temp = 0.04
    c_in = c.clone()
    out = teacher_targets(t.clone(), c_in, temp)
    expect(
        isinstance(out, torch.Tensor),
        f"return a tensor of probabilities, got {type(out).__name__}.",
    )
    right = F.softmax((t - c) / temp, dim=-1)
    expect(
        out.shape == right.shape,
        f"expected one distribution per image, shape (B, K) = {tuple(right.shape)}, got "
        f"{tuple(out.shape)}.",
    )
    name_the_slip(
        out,
        {
            "no centering: subtract the center from the teacher's scores before the "
            "softmax.": F.softmax(t / temp, dim=-1),
            "the center was added: centering subtracts it (t - center).": F.softmax(
                (t + c) / temp, dim=-1
            ),
            "you multiplied by the temperature: divide by it (a small temperature sharpens "
            "the distribution).": F.softmax((t - c) * temp, dim=-1),
            "no sharpening: divide the centred scores by the temperature before the "
            "softmax.": F.softmax(t - c, dim=-1),
            "the softmax ran over the batch (dim=0): each image's distribution is over "
            "the K prototypes, the last dimension.": F.softmax((t - c) / temp, dim=0),
            "you returned log-probabilities: the teacher's targets are probabilities "
            "(softmax, not log_softmax).": F.log_softmax((t - c) / temp, dim=-1),
            "you divided before centering: (t - c) / temp, not t / temp - c.": F.softmax(
                t / temp - c, dim=-1
            ),
        },
    )
    expect(
        torch.allclose(out, right, atol=1e-5),
        "your targets are not softmax((teacher_out - center) / temperature) over the last "
        "dimension.",
    )
    expect(
        torch.allclose(out.sum(-1), torch.ones(len(t)), atol=1e-5),
        "each row should sum to 1.",
    )
    expect(torch.equal(c_in, c), "leave the center unchanged (no in-place update here).")


ex_teacher_targets = Exercise(
    name="ex_teacher_targets",
    checker=_check_teacher_targets,
    hints=(
        (
            "Centering moves every image's scores by the same vector (the running mean of the "
            "teacher's scores); sharpening is a softmax at a low temperature."
        ),
        (
            "Subtract `center` (K,) from `teacher_out` (B, K) (broadcasting does the rest), "
            "divide by `temp`, then softmax over dim=-1."
        ),
    ),
    solution_text="""```python
def teacher_targets(teacher_out, center, temp):
    centred = teacher_out - center  # (B, K): the same shift for every image
    return torch.softmax(centred / temp, dim=-1)  # sharpened: temp < student's 0.1
```""",
)


def _check_clip_loss(clip_loss) -> None:
    g = torch.Generator().manual_seed(11)
    img = (2 * torch.randn(6, 5, generator=g)).requires_grad_()  # (B, E): not unit length
    txt = (3 * torch.randn(6, 5, generator=g) + 0.5).requires_grad_()
    logit_scale = torch.tensor(1.3, requires_grad=True)  # the log of the inverse temperature
    out = call_for_tensor(
        clip_loss,
        img.clone(),
        txt.clone(),
        logit_scale,
        torch_hint=(
            "Normalise both (B, E) inputs, form the (B, B) logits "
            "image @ text.T, then take the cross-entropy both ways with targets 0..B-1."
        ),
        if_none="`return` the loss.",
    )
    expect(out.ndim == 0, f"the loss must be one number (a 0-d tensor), got {tuple(out.shape)}.")
    target = torch.arange(6)

    def ce_both(logits):
        return F.cross_entropy(logits, target), F.cross_entropy(logits.T, target)

    with torch.no_grad():
        i_n, t_n = F.normalize(img, dim=-1), F.normalize(txt, dim=-1)
        s = logit_scale.detach()
        rows, cols = ce_both(s.exp() * i_n @ t_n.T)
        right = (rows + cols) / 2
        name_the_slip(
            out.detach()[None],
            {
                "only the image-to-text half: add the cross-entropy of the columns (each "
                "text over the images, logits.T) and average the two.": rows[None],
                "only the text-to-image half: add the cross-entropy of the rows (each image "
                "over the texts) and average the two.": cols[None],
                "you summed the two halves: CLIP averages them ((a + b) / 2).": (rows + cols)[None],
                "the embeddings were not normalised: divide each row by its length "
                "(F.normalize(x, dim=-1)), so that the logits are cosines times the scale.": (
                    sum(ce_both(s.exp() * img @ txt.T)) / 2
                )[None],
                "the temperature goes the wrong way: the logits are multiplied by "
                "exp(logit_scale) (the inverse temperature, 1 / 0.07 at the start), not "
                "divided by it.": (sum(ce_both(i_n @ t_n.T / s.exp())) / 2)[None],
                "logit_scale is a log: multiply by logit_scale.exp(), not by logit_scale itself.": (
                    sum(ce_both(s * i_n @ t_n.T)) / 2
                )[None],
                "no temperature at all: multiply the cosines by logit_scale.exp().": (
                    sum(ce_both(i_n @ t_n.T)) / 2
                )[None],
            },
        )
        expect(
            torch.allclose(out.detach(), right, atol=1e-5),
            f"your loss is {out.item():.4f}, the symmetric InfoNCE loss is {right.item():.4f}.",
        )
    expect(out.requires_grad, "the loss has no gradient: keep it a tensor (no .item()).")
    out.backward()
    expect(
        logit_scale.grad is not None and logit_scale.grad.abs() > 0,
        "no gradient reaches logit_scale: the temperature must be learned, so use the tensor "
        "itself (logit_scale.exp()), not a copy or a Python float.",
    )
    same = torch.eye(6)  # matching pairs identical: a low loss, lower at a higher scale
    low = clip_loss(same, same, torch.tensor(4.0))
    expect(low.item() < 0.1, "for identical image and text embeddings the loss should be near 0.")


ex_clip_loss = Exercise(
    name="ex_clip_loss",
    checker=_check_clip_loss,
    hints=(
        (
            "Row i of the images and row i of the texts are a pair. Score every image against "
            "every text (cosine similarity, scaled by exp(logit_scale)); each image must pick "
            "its own text among the B texts, and each text its own image among the B images."
        ),
        (
            "img = F.normalize(image_emb, dim=-1) and the same for the texts; logits = "
            "logit_scale.exp() * img @ txt.T is (B, B); targets = torch.arange(B); average "
            "F.cross_entropy(logits, targets) and F.cross_entropy(logits.T, targets)."
        ),
    ),
    solution_text="""```python
def clip_loss(image_emb, text_emb, logit_scale):
    img = F.normalize(image_emb, dim=-1)  # (B, E), unit rows
    txt = F.normalize(text_emb, dim=-1)  # (B, E)
    logits = logit_scale.exp() * img @ txt.T  # (B, B): image i vs text j
    target = torch.arange(len(img))  # the pairs sit on the diagonal
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
```""",
)

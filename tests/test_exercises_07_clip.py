"""The CLIP exercise of notebook 07 (write the symmetric InfoNCE loss): a right answer
passes, common slips get a helpful message."""

import re

import pytest
import torch
import torch.nn.functional as F

from helpers.exercises.nb07_dino_clip import ex_clip_loss
from helpers.studies.clip import clip_loss
from tests.conftest import failure


def halves(img, txt, scale, normalise=True):
    if normalise:
        img, txt = F.normalize(img, dim=-1), F.normalize(txt, dim=-1)
    logits = scale * img @ txt.T
    t = torch.arange(len(img))
    return F.cross_entropy(logits, t), F.cross_entropy(logits.T, t)


def test_right_answers_pass():
    assert ex_clip_loss.check(clip_loss, quiet=True)

    def by_log_softmax(img, txt, s):  # the same loss, written another way
        logits = (
            s.exp()
            * (img / img.norm(dim=1, keepdim=True))
            @ (txt / txt.norm(dim=1, keepdim=True)).T
        )
        return (
            -(logits.log_softmax(1).diagonal().mean() + logits.log_softmax(0).diagonal().mean()) / 2
        )

    assert ex_clip_loss.check(by_log_softmax, quiet=True)


@pytest.mark.parametrize(
    "wrong, message",
    [
        (lambda i, t, s: None, "returned None"),
        (lambda i, t, s: halves(i, t, s.exp())[0], "only the image-to-text half"),
        (lambda i, t, s: halves(i, t, s.exp())[1], "only the text-to-image half"),
        (lambda i, t, s: sum(halves(i, t, s.exp())), "summed the two halves"),
        (lambda i, t, s: sum(halves(i, t, s.exp(), normalise=False)) / 2, "not normalised"),
        (lambda i, t, s: sum(halves(i, t, 1 / s.exp())) / 2, "wrong way"),
        (lambda i, t, s: sum(halves(i, t, s)) / 2, "is a log"),
        (lambda i, t, s: sum(halves(i, t, 1.0)) / 2, "no temperature"),
        (lambda i, t, s: sum(halves(i, t, float(s.detach().exp()))) / 2, "no gradient reaches"),
        (lambda i, t, s: torch.stack(halves(i, t, s.exp())), "one number"),
        (lambda i, t, s: sum(halves(i, t, s.exp())).item() / 2, "expected a tensor"),
        (lambda i, t, s: i @ t, "torch raised"),
        (lambda i, t, s: sum(halves(i, t.flip(0), s.exp())) / 2, "symmetric InfoNCE loss is"),
    ],
)
def test_slips_fail_with_a_helpful_message(wrong, message):
    assert re.search(message, failure(ex_clip_loss, wrong))


def test_placeholder_prints_not_yet(capsys):
    def placeholder(*args): ...

    assert not ex_clip_loss.check(placeholder)
    assert "Not yet" in capsys.readouterr().out

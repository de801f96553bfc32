"""Progress bars that end at 100% in every renderer, also in a saved notebook.

tqdm's notebook widget stores its *first* frame ("0%| 0/250") as the text that GitHub, nbconvert
HTML and a JupyterLab without a kernel show. Here tqdm draws its usual text bar, and in a
notebook each frame replaces one display output in place (`update_display`): what the file
keeps is the last frame, "100%| 250/250 [00:04, 55 step/s]". In a terminal the bar goes to
stderr as usual.
"""

from __future__ import annotations

import sys

from tqdm import tqdm


def in_notebook() -> bool:
    """True inside a Jupyter kernel (JupyterLab, Notebook, VS Code, Colab)."""
    shell = sys.modules.get("IPython") and sys.modules["IPython"].get_ipython()
    return shell is not None and hasattr(shell, "kernel")


class _DisplayLine:
    """A file-like target for tqdm that shows its latest line in one display output."""

    def __init__(self):
        from IPython.display import display

        self.line = ""
        self.handle = display({"text/plain": ""}, raw=True, display_id=True)

    def write(self, text: str) -> None:
        frame = text.replace("\n", "").split("\r")[-1]
        if frame.strip():
            self.line = frame

    def flush(self) -> None:
        self.handle.update({"text/plain": self.line}, raw=True)


def progress_bar(total: int | None = None, desc: str = "", unit: str = "it", disable=False, **kw):
    """A tqdm bar: in a notebook one line updated in place (kept at its final state in the
    saved file), elsewhere tqdm's text bar on stderr. Use it like tqdm (update, set_postfix,
    close, or as an iterable wrapper with `iterable=`)."""
    if disable:
        return tqdm(total=total, disable=True, **kw)
    file = _DisplayLine() if in_notebook() else sys.stderr
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        file=file,
        mininterval=0.5,
        ncols=100,
        ascii=False,
        leave=True,
        **kw,
    )

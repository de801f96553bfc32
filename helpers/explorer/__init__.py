"""The attention explorer: pick an image, a layer, a head, raw attention or rollout and a
query token, and see where that token looks; live in a notebook, or in a page with no kernel.

- `maps`: what it shows, computed in Python (the model's geometry, the query token, the
  state, the texts, `AttentionMaps`: every map of one image from one forward pass).
- `export`: the maps quantized for the browser, and the kernel-free HTML (static export).
- `widget`: `AttentionExplorer`, the live anywidget and its fallbacks (HTML, PNG).
- `view.js`, `view.css`: the browser view, one ES module that both hosts feed.

Imports run one way: widget -> export -> maps -> helpers.attention.

    from helpers.explorer.widget import AttentionExplorer
    AttentionExplorer(model, ShapesDataset("test"), index=0)
"""

// The attention explorer's view: picture + heatmap on a canvas, colorbar, controls.
// One ES module in the anywidget form. The live widget (helpers.explorer.widget.AttentionExplorer)
// hands it an anywidget model; the static export (helpers.explorer.export.static_html)
// hands it `staticModel(data)`, a stand-in with the same get/set/on API over embedded data.
// Every map is precomputed (see export.py for the data layout): a control change
// only picks a map and redraws a 32x32 picture, so no input waits for Python.

const FUSION_LABEL = { mean: "mean over heads", max: "max over heads" };
const NICE = [1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10];
const ALPHA = 0.7; // heatmap over the grey picture, as helpers.plots.show_attention

export function niceCeil(x) {
  if (!(x > 0)) return 1e-9;
  const e = Math.floor(Math.log10(x));
  for (const m of NICE) {
    const v = m * Math.pow(10, e);
    if (v >= x * (1 - 1e-9)) return Number(v.toPrecision(6));
  }
  return Math.pow(10, e + 1);
}

function bytes(x) {
  // base64 text (static export), DataView / ArrayBuffer / typed array (widget buffers)
  if (x == null) return new Uint8Array(0);
  if (typeof x === "string") {
    const s = atob(x);
    const out = new Uint8Array(s.length);
    for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
    return out;
  }
  if (x instanceof ArrayBuffer) return new Uint8Array(x);
  if (ArrayBuffer.isView(x)) return new Uint8Array(x.buffer, x.byteOffset, x.byteLength);
  return new Uint8Array(0);
}

function floats(x) {
  const b = bytes(x);
  return new Float32Array(b.slice().buffer); // a copy: aligned for Float32Array
}

// The static export deflates its arrays: {z: base64 of zlib data} -> Uint8Array, recursively.
export async function inflate(x) {
  if (Array.isArray(x)) return Promise.all(x.map(inflate));
  if (!x || typeof x !== "object" || ArrayBuffer.isView(x)) return x;
  if (typeof x.z === "string") {
    const stream = new Blob([bytes(x.z)]).stream().pipeThrough(new DecompressionStream("deflate"));
    return new Uint8Array(await new Response(stream).arrayBuffer());
  }
  const out = {};
  for (const [k, v] of Object.entries(x)) out[k] = await inflate(v);
  return out;
}

const decoded = new WeakMap();
function decode(entry) {
  let d = decoded.get(entry);
  if (!d) {
    d = {
      raw: bytes(entry.raw), rawMax: floats(entry.raw_max), rawShare: floats(entry.raw_share),
      roll: bytes(entry.roll), rollMax: floats(entry.roll_max), rollShare: floats(entry.roll_share),
      pixels: bytes(entry.pixels),
    };
    decoded.set(entry, d);
  }
  return d;
}

export function headLabel(h) {
  return FUSION_LABEL[h] || `head ${h}`;
}

export function queryLabel(meta, q) {
  const P = meta.prefix.length;
  if (q < P) return meta.prefix[q];
  const g = meta.grid;
  return `patch (${Math.floor((q - P) / g)}, ${(q - P) % g})`;
}

export function titleLines(meta, s) {
  const q = queryLabel(meta, s.query);
  const last = meta.num_layers - 1;
  const h = headLabel(s.head);
  if (s.mode === "raw") return [`Raw attention of ${q}`, `layer ${s.layer} of 0–${last}, ${h}`];
  const span = s.layer === 0 ? `layer 0 only (of 0–${last})` : `layers 0–${s.layer} (of 0–${last})`;
  return [`Attention rollout of ${q}`, `${span}, ${h}`];
}

// --------------------------------------------------------------------------------------
// A model for the static page: the anywidget API over embedded data, no kernel.
// --------------------------------------------------------------------------------------

export function staticModel(data) {
  const values = { meta: data.meta, images: data.images, message: "", ...data.state };
  const handlers = {};
  return {
    get: (k) => values[k],
    set: (k, v) => {
      if (values[k] === v) return;
      values[k] = v;
      (handlers[`change:${k}`] || []).forEach((f) => f());
    },
    on: (ev, f) => (handlers[ev] = handlers[ev] || []).push(f),
    off: () => {},
    save_changes: () => {},
    send: () => {},
  };
}

// --------------------------------------------------------------------------------------
// The view
// --------------------------------------------------------------------------------------

function h(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) if (c) e.append(c);
  return e;
}

function toggle(name, options, onPick) {
  const box = h("div", { class: `clsx-toggle clsx-${name}`, role: "group" });
  const buttons = options.map(([label, value]) => {
    const b = h("button", { type: "button", "data-value": value, text: label });
    b.addEventListener("click", () => onPick(value));
    box.append(b);
    return b;
  });
  return {
    el: box,
    show: (value) => buttons.forEach((b) => b.classList.toggle("clsx-on", b.dataset.value === value)),
  };
}

function render({ model, el }) {
  const PX = 320; // picture side on screen, CSS pixels
  let rawHead = null; // a single head chosen in raw mode, restored when coming back
  let hoverTok = null; // the patch under the mouse
  const get = (k) => model.get(k);
  const put = (changes) => {
    for (const [k, v] of Object.entries(changes)) model.set(k, v);
    model.save_changes();
  };

  // keys typed here are for the view, not JupyterLab's notebook shortcuts
  const root = h("div", { class: "clsx", "data-lm-suppress-shortcuts": "true" });
  el.append(root);

  // ---- figure: title, picture + colorbar, caption ----
  const title = h("div", { class: "clsx-title" });
  const canvas = h("canvas", { class: "clsx-canvas", title: "click a patch: its attention" });
  const cbar = h("canvas", { class: "clsx-cbar" });
  const hover = h("div", { class: "clsx-hover" });
  const share = h("div", { class: "clsx-share" });
  const note = h("div", { class: "clsx-note" });
  const fig = h("div", { class: "clsx-fig" }, title,
    h("div", { class: "clsx-row" }, canvas, cbar), hover, share, note);

  // ---- controls ----
  const meta0 = get("meta");
  const ctl = h("div", { class: "clsx-ctl" });
  const pred = h("div", { class: "clsx-pred" });
  const caution = h("div", { class: "clsx-caution" });
  const imageRow = h("div", { class: "clsx-line clsx-images" });
  const layer = h("input", { type: "range", min: 0, max: meta0.num_layers - 1, step: 1, class: "clsx-layer-input" });
  const layerOut = h("span", { class: "clsx-readout" });
  const head = h("select", { class: "clsx-head-select" });
  const mode = toggle("mode", [["raw attention", "raw"], ["rollout", "rollout"]], (m) => pickMode(m));
  const scale = toggle("scale", [["this map", "map"], ["shared across layers", "shared"]], (v) => put({ scale: v }));
  const prefixButtons = meta0.prefix.map((label, t) => {
    const b = h("button", { type: "button", class: "clsx-prefix", text: label });
    b.addEventListener("click", () => put({ query: t }));
    return b;
  });
  const queryText = h("span", { class: "clsx-query-label" });
  const msg = h("div", { class: "clsx-message", role: "status" });
  const labelled = (text, ...c) => h("div", { class: "clsx-line" }, h("span", { class: "clsx-label", text }), ...c);
  ctl.append(
    pred, caution, imageRow,
    labelled("layer", layer, layerOut),
    labelled("heads", head),
    labelled("show", mode.el),
    labelled("scale", scale.el),
    labelled("query", ...prefixButtons, queryText),
    h("div", { class: "clsx-hint", text: "Click a patch on the picture to make it the query; click it again (or the button) to go back." }),
  );
  if (meta0.live) {
    const file = h("input", { type: "file", accept: "image/*", class: "clsx-file" });
    file.addEventListener("change", async () => {
      const f = file.files && file.files[0];
      if (!f) return;
      msg.textContent = `Reading ${f.name}…`;
      const buf = await f.arrayBuffer();
      file.value = ""; // the same file can be chosen again
      model.send({ type: "upload", name: f.name }, undefined, [buf]);
    });
    ctl.append(labelled("your image", h("label", { class: "clsx-upload", title: "a PNG or JPEG from your computer" },
      file, h("span", { text: "choose a file…" }))));
  } else {
    ctl.append(h("div", { class: "clsx-hint", text: "No kernel: these test images were computed in advance. Run the notebook to pick any test image or upload your own." }));
  }
  ctl.append(msg);
  root.append(fig, ctl);

  // ---- state ----
  const state = () => ({
    layer: get("layer"), head: String(get("head")), mode: get("mode"), query: get("query"),
    scale: get("scale"), image: get("image"),
  });
  const entry = () => { const ims = get("images"); return ims[Math.min(get("image"), ims.length - 1)]; };

  function pickMode(m) {
    const s = state();
    if (m === s.mode) return;
    const keys = get("meta")[m === "raw" ? "raw_heads" : "roll_heads"];
    let hd = s.head;
    if (m === "rollout" && !keys.includes(hd)) { rawHead = hd; hd = keys[0]; }
    else if (m === "raw" && rawHead !== null && hd === keys[0]) { hd = rawHead; rawHead = null; }
    put({ mode: m, head: hd });
  }

  function mapOf(s, d, meta, layerIdx) {
    const raw = s.mode === "raw";
    const keys = raw ? meta.raw_heads : meta.roll_heads;
    let k = keys.indexOf(s.head);
    if (k < 0) k = 0;
    const T = meta.prefix.length + meta.grid * meta.grid, G = meta.grid * meta.grid;
    const i = (layerIdx * keys.length + k) * T + s.query;
    return { q: (raw ? d.raw : d.roll).subarray(i * G, (i + 1) * G), max: (raw ? d.rawMax : d.rollMax)[i],
      share: (raw ? d.rawShare : d.rollShare)[i], index: i, stride: keys.length * T };
  }

  const lut = bytes(meta0.cmap);
  let last = null;

  function draw() {
    const t0 = performance.now();
    const meta = get("meta"), s = state(), e = entry();
    if (!e) return;
    const d = decode(e);
    const m = mapOf(s, d, meta, s.layer);
    let top = m.max;
    if (s.scale === "shared") {
      for (let l = 0; l < meta.num_layers; l++) top = Math.max(top, mapOf(s, d, meta, l).max);
    }
    const vmax = niceCeil(top);
    // picture: grey luminance under the heatmap, one texel per image pixel
    const S = meta.image_size, p = meta.patch_size, g = meta.grid, P = meta.prefix.length;
    const small = document.createElement("canvas");
    small.width = small.height = S;
    const sctx = small.getContext("2d");
    const img = sctx.createImageData(S, S);
    const scaleQ = m.max / (meta.levels || 255) / vmax;
    for (let y = 0; y < S; y++) {
      for (let x = 0; x < S; x++) {
        const v = Math.min(1, m.q[Math.floor(y / p) * g + Math.floor(x / p)] * scaleQ);
        const c = Math.round(v * 255) * 3, grey = d.pixels[y * S + x] * (1 - ALPHA), o = (y * S + x) * 4;
        img.data[o] = ALPHA * lut[c] + grey;
        img.data[o + 1] = ALPHA * lut[c + 1] + grey;
        img.data[o + 2] = ALPHA * lut[c + 2] + grey;
        img.data[o + 3] = 255;
      }
    }
    sctx.putImageData(img, 0, 0);
    const dpr = window.devicePixelRatio || 1;
    if (canvas.width !== PX * dpr) { canvas.width = canvas.height = PX * dpr; }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(small, 0, 0, PX, PX);
    const cell = PX / g;
    ctx.strokeStyle = "rgba(255,255,255,0.25)";
    ctx.lineWidth = 1;
    ctx.beginPath();
    for (let k = 1; k < g; k++) {
      ctx.moveTo(k * cell, 0); ctx.lineTo(k * cell, PX);
      ctx.moveTo(0, k * cell); ctx.lineTo(PX, k * cell);
    }
    ctx.stroke();
    if (hoverTok !== null && hoverTok !== s.query) { // the patch a click would pick
      const r = Math.floor((hoverTok - P) / g), c = (hoverTok - P) % g;
      ctx.setLineDash([4, 3]);
      ctx.strokeStyle = "#ffffff";
      ctx.lineWidth = 2;
      ctx.strokeRect(c * cell + 1, r * cell + 1, cell - 2, cell - 2);
      ctx.setLineDash([]);
    }
    if (s.query >= P) {
      const r = Math.floor((s.query - P) / g), c = (s.query - P) % g;
      ctx.strokeStyle = "#00e5ff";
      ctx.lineWidth = 3;
      ctx.strokeRect(c * cell + 1.5, r * cell + 1.5, cell - 3, cell - 3);
    }
    drawColorbar(vmax, s);
    // texts
    const prefixName = P === 0 ? "" : meta.prefix[0] !== "CLS" ? "registers" : P > 1 ? "CLS + registers" : "CLS";
    const [t1, t2] = titleLines(meta, s);
    title.replaceChildren(h("b", { text: t1 }), h("br"), document.createTextNode(t2));
    share.textContent = P === 0 ? "the map holds the whole row (no prefix tokens)"
      : `the map holds ${Math.round(100 * (1 - m.share))}% of the row; ${prefixName}: ${Math.round(100 * m.share)}%`;
    if (s.mode === "rollout") {
      const raw = mapOf({ ...s, mode: "raw", head: meta.raw_heads[0] }, d, meta, s.layer);
      const pct = (x) => `${Math.round(100 * x)}%`;
      note.textContent = "Rollout mixes each layer's attention with the identity (½A + ½I, the residual path) "
        + "and multiplies through the layers, so each token keeps part of its row on itself: "
        + (P ? `${prefixName} holds ${pct(m.share)} of this row, against ${pct(raw.share)} in raw attention `
          + `(layer ${s.layer}, ${headLabel(meta.raw_heads[0])}).` : "")
        + (rawHead !== null ? ` Rollout fuses the heads at every layer, so it shows the ${headLabel(s.head)}; head ${rawHead} comes back in raw mode.` : "");
    } else note.textContent = "";
    // controls
    layer.value = s.layer;
    layerOut.textContent = `${s.layer} of 0–${meta.num_layers - 1}`;
    const keys = s.mode === "raw" ? meta.raw_heads : meta.roll_heads;
    if (head.dataset.keys !== keys.join()) {
      head.replaceChildren(...keys.map((k) => h("option", { value: k, text: headLabel(k) })));
      head.dataset.keys = keys.join();
    }
    head.value = s.head;
    mode.show(s.mode);
    scale.show(s.scale);
    prefixButtons.forEach((b, t) => b.classList.toggle("clsx-on", t === s.query));
    queryText.textContent = s.query >= P ? queryLabel(meta, s.query) : "";
    // the image: prediction, caution, picker
    if (last !== e) drawImageInfo(meta, e);
    last = e;
    msg.textContent = get("message") || "";
    root.dataset.query = String(s.query);
    root.dataset.layer = String(s.layer);
    root.dataset.head = s.head;
    root.dataset.mode = s.mode;
    root.dataset.scale = s.scale;
    root.dataset.drawMs = (performance.now() - t0).toFixed(3);
    root.dataset.draws = String(Number(root.dataset.draws || 0) + 1);
  }

  function drawColorbar(vmax, s) {
    const W = 78, H = PX, dpr = window.devicePixelRatio || 1;
    cbar.width = W * dpr; cbar.height = H * dpr;
    cbar.style.width = `${W}px`; cbar.style.height = `${H}px`;
    const ctx = cbar.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, W, H);
    const x0 = 4, bw = 14, y0 = 6, bh = H - 12;
    for (let i = 0; i < bh; i++) {
      const c = Math.round(255 * (1 - i / (bh - 1))) * 3;
      ctx.fillStyle = `rgb(${lut[c]},${lut[c + 1]},${lut[c + 2]})`;
      ctx.fillRect(x0, y0 + i, bw, 1);
    }
    ctx.strokeStyle = "#444"; ctx.lineWidth = 1; ctx.strokeRect(x0 + 0.5, y0 + 0.5, bw, bh);
    ctx.fillStyle = "#222"; ctx.font = "13px sans-serif"; ctx.textBaseline = "middle";
    const e = Math.floor(Math.log10(vmax / 4));
    const step = [1, 2, 2.5, 5, 10].map((m) => m * Math.pow(10, e)).find((v) => vmax / v <= 5.0001);
    for (let k = 0; k * step <= vmax * 1.0001; k++) {
      const y = y0 + bh * (1 - (k * step) / vmax);
      ctx.fillRect(x0 + bw, y, 3, 1);
      ctx.fillText(Number((k * step).toPrecision(3)).toString(), x0 + bw + 5, y);
    }
    ctx.save();
    ctx.translate(W - 6, y0 + bh / 2);
    ctx.rotate(-Math.PI / 2);
    ctx.textAlign = "center";
    const what = s.mode === "rollout" ? "rollout weight" : "attention weight";
    ctx.fillText(`${what} · ${s.scale === "shared" ? "scale shared across layers" : "scaled to this map"}`, 0, 0);
    ctx.restore();
    cbar.dataset.scale = s.scale;
    cbar.dataset.vmax = String(vmax);
  }

  function drawImageInfo(meta, e) {
    const rows = (e.top || []).map(([name, p]) => h("tr", {},
      h("td", { text: name }),
      h("td", {}, h("div", { class: "clsx-bar", style: `width:${Math.max(1, Math.round(110 * p))}px` })),
      h("td", { class: "clsx-pct", text: `${(100 * p).toFixed(1)}%` })));
    pred.replaceChildren(h("div", { class: "clsx-source", text: e.source }), h("b", { text: e.headline || "" }),
      h("table", {}, ...rows));
    caution.textContent = e.caution || "";
    caution.style.display = e.caution ? "" : "none";
    const ims = get("images");
    if (meta.live) {
      if (!imageRow.firstChild) {
        const N = Math.max(0, meta.dataset_size - 1);
        const num = h("input", { type: "number", min: 0, max: N, step: 1, class: "clsx-index" });
        const said = h("span", { class: "clsx-index-note", role: "status", "aria-live": "polite" });
        let shown = null; // the value last committed: a blur after Enter commits nothing new
        const go = (delta) => {
          const text = num.value.trim(), asked = Number(text);
          if (delta === 0 && (text === "" || !Number.isFinite(asked))) {
            const i = get("index");
            num.value = i >= 0 ? i : "";
            shown = num.value;
            said.textContent = `images 0–${N}: type a whole number`;
            return;
          }
          const want = Math.round(Number.isFinite(asked) ? asked : 0) + delta;
          const v = Math.max(0, Math.min(N, want));
          said.textContent = v !== want || (delta === 0 && !Number.isInteger(asked)) ? `images 0–${N}: showing ${v}` : "";
          num.value = v; shown = num.value; msg.textContent = ""; put({ index: v });
        };
        num.addEventListener("change", () => { if (num.value !== shown) go(0); });
        num.addEventListener("keydown", (ev) => {
          if (ev.key !== "Enter" || ev.shiftKey || ev.ctrlKey || ev.altKey || ev.metaKey) return;
          ev.preventDefault();
          go(0);
        });
        const prev = h("button", { type: "button", class: "clsx-prev", text: "◀", title: "previous test image" });
        const next = h("button", { type: "button", class: "clsx-next", text: "▶", title: "next test image" });
        prev.addEventListener("click", () => go(-1));
        next.addEventListener("click", () => go(1));
        imageRow.append(h("span", { class: "clsx-label", text: "test image" }), prev, num, next, said);
      }
      const num = imageRow.querySelector("input");
      const idx = get("index");
      // a redraw (a mouse move over the picture) must not wipe a number being typed
      if (document.activeElement !== num || imageRow.dataset.index !== String(idx)) {
        num.value = idx >= 0 ? idx : "";
      }
      imageRow.dataset.index = String(idx);
      num.placeholder = idx >= 0 ? "" : "yours";
    } else {
      imageRow.replaceChildren(h("span", { class: "clsx-label", text: "image" }), ...ims.map((im, i) => {
        const b = h("button", { type: "button", class: "clsx-pick", text: im.short || String(i), title: im.source });
        b.classList.toggle("clsx-on", i === get("image"));
        b.addEventListener("click", () => { last = null; put({ image: i }); });
        return b;
      }));
    }
  }

  // ---- picking a patch on the picture ----
  function patchAt(ev) {
    const meta = get("meta"), r = canvas.getBoundingClientRect(), g = meta.grid;
    const c = Math.floor(((ev.clientX - r.left) / r.width) * g), rr = Math.floor(((ev.clientY - r.top) / r.height) * g);
    if (c < 0 || c >= g || rr < 0 || rr >= g) return null;
    return meta.prefix.length + rr * g + c;
  }
  canvas.addEventListener("click", (ev) => {
    const t = patchAt(ev);
    if (t === null) return;
    put({ query: t === get("query") && get("meta").prefix.length ? 0 : t });
  });
  canvas.addEventListener("mousemove", (ev) => {
    const t = patchAt(ev);
    if (t === hoverTok) return;
    hoverTok = t;
    hover.textContent = t === null ? "" : `click: attention of ${queryLabel(get("meta"), t)}`;
    draw();
  });
  canvas.addEventListener("mouseleave", () => { hoverTok = null; hover.textContent = ""; draw(); });
  layer.addEventListener("input", () => put({ layer: Number(layer.value) }));
  // arrow keys step the layer (Up/Right: deeper), Home/End jump to the first/last layer
  const LAYER_STEP = { ArrowRight: 1, ArrowUp: 1, PageUp: 1, ArrowLeft: -1, ArrowDown: -1, PageDown: -1 };
  layer.addEventListener("keydown", (ev) => {
    if (ev.ctrlKey || ev.altKey || ev.metaKey) return;
    const n = get("meta").num_layers, now = get("layer");
    let v;
    if (ev.key in LAYER_STEP) v = now + LAYER_STEP[ev.key];
    else if (ev.key === "Home") v = 0;
    else if (ev.key === "End") v = n - 1;
    else return;
    ev.preventDefault();
    v = Math.max(0, Math.min(n - 1, v));
    if (v !== now) { layer.value = v; put({ layer: v }); }
  });
  // keys typed into the view's own controls stay there: JupyterLab's notebook shortcuts
  // (arrows: other cell, Enter: edit mode, digits: cell type...) must not see them.
  // Escape, Shift+Enter and Ctrl/Alt/Cmd combinations still reach JupyterLab.
  root.addEventListener("keydown", (ev) => {
    const t = ev.target;
    if (!(t instanceof Element) || !t.matches("input, select, button, textarea")) return;
    if (ev.key === "Escape" || ev.ctrlKey || ev.altKey || ev.metaKey || (ev.key === "Enter" && ev.shiftKey)) return;
    ev.stopPropagation();
  });
  head.addEventListener("change", () => { rawHead = null; put({ head: head.value }); });

  for (const k of ["layer", "head", "mode", "query", "scale", "image", "images", "message", "index"]) {
    model.on(`change:${k}`, () => { if (k === "images") last = null; draw(); });
  }
  draw();
  return () => root.remove();
}

export default { render, staticModel, inflate };

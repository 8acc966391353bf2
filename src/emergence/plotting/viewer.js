// emergence viewer: one run (or one report) in a self-contained page. Maps are computed here from the embedded
// attention with the library's rules (emergence.analysis.token_maps, VisualLayout.render); no network, no libraries.
"use strict";
(function () {
  const DATA = JSON.parse(document.getElementById("emergence-data").textContent);

  // ------------------------------------------------------------------ decoding
  function bytesOf(b64) {
    const bin = atob(b64);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }
  const HALF = new Float32Array(65536);
  (function () {
    for (let h = 0; h < 65536; h++) {
      const s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 0x1f, f = h & 0x3ff;
      HALF[h] = e === 0 ? s * f * Math.pow(2, -24) : e === 31 ? (f ? NaN : s * Infinity) : s * (1 + f / 1024) * Math.pow(2, e - 15);
    }
  })();
  function float16Array(b64) {
    const bytes = bytesOf(b64);
    const view = new DataView(bytes.buffer);
    const n = bytes.length / 2, out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = HALF[view.getUint16(2 * i, true)];
    return out;
  }
  const ATT = float16Array(DATA.attention.data);
  const [T, L, H, V] = DATA.attention.shape; // H = 1 for layer means, L = 1 for one mean map
  const EXTRA = {};
  for (const [name, m] of Object.entries(DATA.methods || {})) EXTRA[name] = float16Array(m.data); // [T, V]

  // ------------------------------------------------------------------ the library's map rules
  function lowerMedian(values) {
    const a = Float64Array.from(values).sort();
    return a.length ? a[(a.length - 1) >> 1] : 0; // torch.median: the lower of the two middle values
  }
  // [T, Vp] mean over the chosen layers and heads, of the panel's members
  function reduce(layerIdx, headSel, members) {
    const Vp = members.length, out = new Float64Array(T * Vp);
    let pairs = [];
    if (headSel.pairs) pairs = headSel.pairs;
    else for (const l of layerIdx) for (const h of headSel.heads) pairs.push([l, h]);
    for (let t = 0; t < T; t++) {
      for (const [l, h] of pairs) {
        const base = ((t * L + l) * H + h) * V;
        for (let j = 0; j < Vp; j++) out[t * Vp + j] += ATT[base + members[j]];
      }
      for (let j = 0; j < Vp; j++) out[t * Vp + j] /= pairs.length;
    }
    return out;
  }
  function replaceByMedian(maps, Vp, positions) {
    const count = positions.reduce((a, b) => a + (b ? 1 : 0), 0);
    if (count === 0 || count === Vp) return;
    for (let t = 0; t < T; t++) {
      const keep = [];
      for (let j = 0; j < Vp; j++) if (!positions[j]) keep.push(maps[t * Vp + j]);
      const med = lowerMedian(keep);
      for (let j = 0; j < Vp; j++) if (positions[j]) maps[t * Vp + j] = med;
    }
  }
  function sinkPositions(maps, Vp, z) {
    const mean = new Float64Array(Vp);
    for (let t = 0; t < T; t++) for (let j = 0; j < Vp; j++) mean[j] += maps[t * Vp + j] / T;
    const med = lowerMedian(mean);
    const mad = lowerMedian(Array.from(mean, (m) => Math.abs(m - med))) * 1.4826;
    return Array.from(mean, (m) => (mad === 0 ? m > med : m > med + z * mad));
  }
  function cornerPositions(part, Vp) {
    const out = new Array(Vp).fill(false);
    for (const v of part.views) {
      const at = (r, c) => v.index[r * v.cols + c];
      for (const [r, c] of [[0, 0], [0, v.cols - 1], [v.rows - 1, 0], [v.rows - 1, v.cols - 1]]) {
        const k = at(r, c);
        if (k >= 0) out[k] = true;
      }
    }
    return out;
  }
  function normalise(maps, Vp, mode) {
    if (mode === "mean_subtract") {
      const mean = new Float64Array(Vp);
      for (let t = 0; t < T; t++) for (let j = 0; j < Vp; j++) mean[j] += maps[t * Vp + j];
      for (let j = 0; j < Vp; j++) mean[j] /= T;
      for (let t = 0; t < T; t++) for (let j = 0; j < Vp; j++) maps[t * Vp + j] -= mean[j];
    } else if (mode === "minmax") {
      for (let t = 0; t < T; t++) {
        let lo = Infinity, hi = -Infinity;
        for (let j = 0; j < Vp; j++) { const x = maps[t * Vp + j]; lo = Math.min(lo, x); hi = Math.max(hi, x); }
        for (let j = 0; j < Vp; j++) maps[t * Vp + j] = hi > lo ? (maps[t * Vp + j] - lo) / (hi - lo) : 0;
      }
    }
    return maps;
  }
  // torch.nn.functional.grid_sample, bicubic (A = -0.75), padding "border", align_corners=False
  function cc1(x) { return ((1.25 * x) - 2.25) * x * x + 1; }
  function cc2(x) { return ((-0.75 * x + 3.75) * x - 6) * x + 3; }
  function renderView(values, view, outH, outW, sx, sy) {
    const rows = view.rows, cols = view.cols, g = new Float64Array(rows * cols);
    let sum = 0, n = 0;
    for (let i = 0; i < rows * cols; i++) if (view.local[i] >= 0) { g[i] = values[view.local[i]]; sum += g[i]; n++; }
    if (n < rows * cols) for (let i = 0; i < rows * cols; i++) if (view.local[i] < 0) g[i] = n ? sum / n : 0;
    const [x0, y0, x1, y1] = view.box;
    const val = new Float64Array(outH * outW), cov = new Uint8Array(outH * outW);
    const clampX = (i) => Math.min(Math.max(i, 0), cols - 1), clampY = (i) => Math.min(Math.max(i, 0), rows - 1);
    const at = (r, c) => g[clampY(r) * cols + clampX(c)];
    for (let y = 0; y < outH; y++) {
      const gy = ((y + 0.5) / sy - y0) / (y1 - y0) * 2 - 1;
      if (!(gy >= -1 && gy < 1)) continue;
      const iy = ((Math.fround(gy) + 1) * rows - 1) / 2, fy = Math.floor(iy), ty = iy - fy;
      const wy = [cc2(ty + 1), cc1(ty), cc1(1 - ty), cc2(2 - ty)];
      for (let x = 0; x < outW; x++) {
        const gx = ((x + 0.5) / sx - x0) / (x1 - x0) * 2 - 1;
        if (!(gx >= -1 && gx < 1)) continue;
        cov[y * outW + x] = 1;
        if (rows === 1 && cols === 1) { val[y * outW + x] = g[0]; continue; }
        const ix = ((Math.fround(gx) + 1) * cols - 1) / 2, fx = Math.floor(ix), tx = ix - fx;
        const wx = [cc2(tx + 1), cc1(tx), cc1(1 - tx), cc2(2 - tx)];
        let acc = 0;
        for (let a = 0; a < 4; a++) {
          let rowAcc = 0;
          for (let b = 0; b < 4; b++) rowAcc += wx[b] * at(fy - 1 + a, fx - 1 + b);
          acc += wy[a] * rowAcc;
        }
        val[y * outW + x] = acc;
      }
    }
    return [val, cov];
  }
  // VisualLayout.render of one [Vp] vector on an outH x outW grid
  function render(values, part, outH, outW) {
    const sy = outH / part.image_size[0], sx = outW / part.image_size[1];
    const total = new Float64Array(outH * outW), weight = new Float64Array(outH * outW);
    for (const view of part.views) {
      const [val, cov] = renderView(values, view, outH, outW, sx, sy);
      const scale = part.fuse === "density" ? 1 / (view.cell[0] * view.cell[1] * sx * sy) : 1;
      for (let i = 0; i < total.length; i++) if (cov[i]) { total[i] += val[i] * scale; weight[i] += 1; }
    }
    let lo = Infinity;
    const heat = new Float32Array(outH * outW);
    for (let i = 0; i < heat.length; i++) {
      if (weight[i] > 0) { heat[i] = part.fuse === "density" ? total[i] : total[i] / weight[i]; lo = Math.min(lo, heat[i]); }
    }
    for (let i = 0; i < heat.length; i++) if (!(weight[i] > 0)) heat[i] = lo === Infinity ? 0 : lo;
    return heat;
  }

  // ------------------------------------------------------------------ colour maps
  const MAPS = {
    jet: (v) => [Math.min(1, Math.max(0, 1.5 - Math.abs(4 * v - 3))), Math.min(1, Math.max(0, 1.5 - Math.abs(4 * v - 2))),
                 Math.min(1, Math.max(0, 1.5 - Math.abs(4 * v - 1)))],
    viridis: (v) => {
      const s = [[0.267, 0.005, 0.329], [0.229, 0.322, 0.546], [0.128, 0.567, 0.551], [0.369, 0.789, 0.383], [0.993, 0.906, 0.144]];
      const p = Math.min(3.9999, Math.max(0, v * 4)), i = Math.floor(p), f = p - i;
      return [0, 1, 2].map((c) => s[i][c] * (1 - f) + s[i + 1][c] * f);
    },
    gray: (v) => [v, v, v],
  };

  // ------------------------------------------------------------------ state
  const D = DATA.defaults;
  const state = {
    word: 0, panel: 0, layerLo: 0, layerHi: Math.max(0, L - 1), head: D.head || "mean", normalise: D.normalise,
    sinkZ: D.sink_z === undefined ? null : D.sink_z, corners: !!D.remove_corners, opacity: 0.55, cmap: "jet",
    method: D.method, mask: true, marker: true,
    // an explicit list of layer indices (the report's own choice) until the range is moved
    layers: D.layers && L > 1 ? D.layers.map((layer) => DATA.layers.indexOf(layer)).filter((l) => l >= 0) : null,
  };
  const cache = new Map();
  function panel() { return DATA.panels[state.panel]; }
  function headSelection() {
    if (state.head === "mean") return { heads: [...Array(H).keys()] };
    if (state.head === "selected") {
      const pairs = [];
      for (const [layer, h] of DATA.selected_heads || []) {
        const l = DATA.layers.indexOf(layer);
        if (l >= 0) pairs.push([l, h]);
      }
      return { pairs };
    }
    return { heads: [Number(state.head)] };
  }
  function tokenMaps() {
    const p = panel(), part = DATA.parts[p.part];
    const key = [state.method, p.part, state.layerLo, state.layerHi, state.layers, state.head, state.normalise, state.sinkZ,
                 state.corners].join("|");
    if (cache.has(key)) return cache.get(key);
    const members = part.members, Vp = members.length;
    let maps;
    if (state.method !== "attention") {
      maps = new Float64Array(T * Vp);
      const src = EXTRA[state.method];
      for (let t = 0; t < T; t++) for (let j = 0; j < Vp; j++) maps[t * Vp + j] = src[t * V + members[j]];
    } else {
      let layers = [];
      if (state.layers) layers = state.layers;
      else for (let l = state.layerLo; l <= state.layerHi; l++) layers.push(l);
      maps = reduce(layers, headSelection(), members);
      if (state.sinkZ !== null) replaceByMedian(maps, Vp, sinkPositions(maps, Vp, state.sinkZ));
      if (state.corners) replaceByMedian(maps, Vp, cornerPositions(part, Vp));
      normalise(maps, Vp, state.normalise);
    }
    if (cache.size > 16) cache.clear();
    cache.set(key, maps);
    return maps;
  }
  function wordHeat(method) {
    const saved = state.method;
    if (method !== undefined) state.method = method;
    const p = panel(), part = DATA.parts[p.part], maps = tokenMaps(), Vp = part.members.length;
    state.method = saved;
    const toks = DATA.words[state.word].tokens, vec = new Float64Array(Vp);
    for (const t of toks) for (let j = 0; j < Vp; j++) vec[j] += maps[t * Vp + j] / toks.length;
    return render(vec, part, p.height, p.width);
  }

  // ------------------------------------------------------------------ drawing
  const $ = (id) => document.getElementById(id);
  const images = DATA.panels.map((p) => { const im = new Image(); im.src = "data:image/png;base64," + p.png; return im; });
  let current = null;
  function paint(ctx, p, heat, lo, hi) {
    ctx.clearRect(0, 0, p.width, p.height);
    ctx.drawImage(images[state.panel], 0, 0, p.width, p.height);
    const over = ctx.createImageData(p.width, p.height), cm = MAPS[state.cmap];
    for (let i = 0; i < heat.length; i++) {
      const v = hi > lo ? (heat[i] - lo) / (hi - lo) : 0, c = cm(v);
      over.data[4 * i] = Math.round(255 * c[0]); over.data[4 * i + 1] = Math.round(255 * c[1]);
      over.data[4 * i + 2] = Math.round(255 * c[2]); over.data[4 * i + 3] = Math.round(255 * state.opacity);
    }
    const layer = document.createElement("canvas");
    layer.width = p.width; layer.height = p.height;
    layer.getContext("2d").putImageData(over, 0, 0);
    ctx.drawImage(layer, 0, 0);
  }
  function range(heat) {
    let lo = Infinity, hi = -Infinity, peak = 0;
    for (let i = 0; i < heat.length; i++) { if (heat[i] > hi) { hi = heat[i]; peak = i; } lo = Math.min(lo, heat[i]); }
    return [lo, hi, peak];
  }
  // the other recorded map methods of the same word, side by side
  function drawMethods() {
    const strip = $("ev-methods"), names = Object.keys(DATA.methods || {});
    if (!strip || !names.length) return;
    const p = panel();
    strip.innerHTML = "";
    for (const name of ["attention", ...names]) {
      const fig = document.createElement("figure"), c = document.createElement("canvas");
      c.width = p.width; c.height = p.height; c.className = "ev-small-canvas"; c.dataset.method = name;
      const heat = wordHeat(name), [lo, hi] = range(heat);
      paint(c.getContext("2d"), p, heat, lo, hi);
      const cap = document.createElement("figcaption");
      cap.textContent = name + (name === state.method ? " (shown)" : "");
      fig.appendChild(c); fig.appendChild(cap);
      fig.addEventListener("click", () => set({ method: name }));
      strip.appendChild(fig);
    }
  }
  function draw() {
    const p = panel(), canvas = $("ev-canvas"), ctx = canvas.getContext("2d");
    canvas.width = p.width; canvas.height = p.height;
    canvas.style.width = Math.max(p.width, Math.min(448, 4 * p.width)) + "px";
    const heat = wordHeat();
    const [lo, hi, peak] = range(heat);
    current = { heat, width: p.width, height: p.height, peak: [peak % p.width, Math.floor(peak / p.width)], lo, hi };
    const draw2 = () => {
      paint(ctx, p, heat, lo, hi);
      drawReportMarks(ctx, p);
      drawMethods();
      if (state.marker) {
        ctx.strokeStyle = "white"; ctx.lineWidth = Math.max(1, p.width / 200);
        const [px, py] = current.peak, r = Math.max(3, p.width / 40);
        ctx.beginPath(); ctx.moveTo(px - r, py); ctx.lineTo(px + r, py); ctx.moveTo(px, py - r); ctx.lineTo(px, py + r); ctx.stroke();
      }
      document.body.dataset.drawn = String(Number(document.body.dataset.drawn || 0) + 1);
    };
    if (images[state.panel].complete) draw2(); else images[state.panel].onload = draw2;
    updateWords();
    updateInfo();
  }
  function drawReportMarks(ctx, p) {
    const R = DATA.report;
    if (!R || !state.mask) return;
    const unit = R.units[state.word];
    if (!unit) return;
    const sx = p.width / R.image_size[1], sy = p.height / R.image_size[0];
    const outline = (b64, colour) => {
      const bits = bytesOf(b64), [mh, mw] = R.mask_size;
      ctx.fillStyle = colour;
      for (let y = 0; y < mh; y++) for (let x = 0; x < mw; x++) {
        const i = y * mw + x, inside = (bits[i >> 3] >> (7 - (i & 7))) & 1;
        if (!inside) continue;
        const edge = [[1, 0], [-1, 0], [0, 1], [0, -1]].some(([dx, dy]) => {
          const xx = x + dx, yy = y + dy;
          if (xx < 0 || yy < 0 || xx >= mw || yy >= mh) return true;
          const j = yy * mw + xx;
          return !((bits[j >> 3] >> (7 - (j & 7))) & 1);
        });
        if (edge) ctx.fillRect(x * p.width / mw, y * p.height / mh, Math.max(1, p.width / mw), Math.max(1, p.height / mh));
      }
    };
    if (R.gt) outline(R.gt, "rgba(0,255,0,0.95)");
    if (unit.mask) outline(unit.mask, "rgba(255,255,255,0.95)");
    for (const [x, y, label] of unit.points || []) {
      ctx.fillStyle = label ? "lime" : "red";
      ctx.beginPath(); ctx.arc(x * sx, y * sy, Math.max(1.5, p.width / 100), 0, 2 * Math.PI); ctx.fill();
    }
  }
  function updateWords() {
    document.querySelectorAll(".ev-word").forEach((el) => el.classList.toggle("ev-on", Number(el.dataset.word) === state.word));
  }
  function updateInfo() {
    const w = DATA.words[state.word], R = DATA.report;
    let text = `word ${state.word}: ${JSON.stringify(w.text)} (tokens ${w.tokens.join(", ")})`;
    if (R && R.units[state.word]) {
      const u = R.units[state.word];
      text += ` · IoU ${u.iou === null ? "—" : u.iou.toFixed(3)} · ${u.category}` + (u.emergence ? " · EMERGENCE" : "") + (u.best ? " · best" : "");
    }
    $("ev-info").textContent = text;
    if (R) drawCurve();
  }
  function drawCurve() {
    const R = DATA.report, svg = $("ev-curve");
    if (!svg || !R) return;
    const n = R.units.length, W = 640, pad = 28, base = 150;
    const xs = (i) => pad + (n > 1 ? (i * (W - 2 * pad)) / (n - 1) : 0), ys = (v) => base - pad + 4 - v * (base - pad - 24);
    let path = "";
    R.units.forEach((u, i) => { if (u.iou !== null) path += (path ? "L" : "M") + xs(i).toFixed(1) + "," + ys(u.iou).toFixed(1); });
    let out = `<line x1="${pad}" x2="${W - pad}" y1="${ys(R.tau)}" y2="${ys(R.tau)}" class="ev-tau"/>`;
    out += `<path d="${path}" class="ev-line"/>`;
    // the emergence line goes under the dots, so that the emergence word's dot on it stays clickable
    if (R.emergence !== null) out += `<line x1="${xs(R.emergence)}" x2="${xs(R.emergence)}" y1="4" y2="${base - pad + 4}" class="ev-emline"/>`;
    R.units.forEach((u, i) => {
      if (u.iou === null) return;
      out += `<circle cx="${xs(i)}" cy="${ys(u.iou)}" r="${i === state.word ? 5 : 3}" class="${u.emergence ? "ev-emerge" : "ev-dot"}" data-word="${i}"/>`;
    });
    DATA.words.forEach((w, i) => {
      const label = w.text.trim().replace(/&/g, "&amp;").replace(/</g, "&lt;");
      out += `<text class="ev-tick${i === state.word ? " ev-tick-on" : ""}" transform="translate(${xs(i) + 3},${base - pad + 12}) rotate(60)">${label}</text>`;
    });
    out += `<text x="${pad}" y="12">IoU along the answer (tau ${R.tau}, dashed); red: emergence</text>`;
    svg.innerHTML = out;
    svg.querySelectorAll("circle").forEach((c) => c.addEventListener("click", () => set({ word: Number(c.dataset.word) })));
  }

  // ------------------------------------------------------------------ controls
  function set(changes) { Object.assign(state, changes); draw(); syncControls(); }
  function syncControls() {
    $("ev-layer-lo").value = state.layerLo; $("ev-layer-hi").value = state.layerHi;
    $("ev-layers-label").textContent = L <= 1 ? "layers: one mean map" : state.layers
      ? `layers ${state.layers.map((l) => DATA.layers[l]).join(", ")}` : `layers ${DATA.layers[state.layerLo]}–${DATA.layers[state.layerHi]}`;
    $("ev-head").value = state.head; $("ev-norm").value = state.normalise; $("ev-cmap").value = state.cmap;
    $("ev-opacity").value = state.opacity; $("ev-panel").value = state.panel; $("ev-method").value = state.method;
    $("ev-sink").value = state.sinkZ === null ? "" : state.sinkZ; $("ev-corners").checked = state.corners;
    const att = state.method === "attention";
    for (const id of ["ev-layer-lo", "ev-layer-hi", "ev-head", "ev-norm", "ev-sink", "ev-corners"]) $(id).disabled = !att;
  }
  function build() {
    const words = $("ev-words");
    DATA.words.forEach((w, i) => {
      const span = document.createElement("span");
      span.className = "ev-word"; span.dataset.word = i; span.textContent = w.text;
      span.title = `tokens ${w.tokens.join(", ")}`;
      span.addEventListener("click", () => set({ word: i }));
      span.addEventListener("mouseenter", () => { if ($("ev-hover").checked) set({ word: i }); });
      words.appendChild(span);
      words.appendChild(document.createTextNode(" "));
    });
    const lo = $("ev-layer-lo"), hi = $("ev-layer-hi");
    lo.max = hi.max = Math.max(0, L - 1);
    lo.addEventListener("input", () => set({ layers: null, layerLo: Math.min(Number(lo.value), state.layerHi) }));
    hi.addEventListener("input", () => set({ layers: null, layerHi: Math.max(Number(hi.value), state.layerLo) }));
    const head = $("ev-head");
    const opts = [["mean", H > 1 ? `mean of ${H} heads` : "mean of the heads (stored as a mean)"]];
    if (DATA.selected_heads && DATA.selected_heads.length && H > 1) opts.push(["selected", `selected heads (${DATA.selected_heads.map((p) => p.join(":")).join(", ")})`]);
    if (H > 1) for (let h = 0; h < H; h++) opts.push([String(h), `head ${h}`]);
    for (const [v, label] of opts) head.add(new Option(label, v));
    head.addEventListener("change", () => set({ head: head.value }));
    $("ev-norm").addEventListener("change", (e) => set({ normalise: e.target.value }));
    $("ev-cmap").addEventListener("change", (e) => set({ cmap: e.target.value }));
    $("ev-opacity").addEventListener("input", (e) => set({ opacity: Number(e.target.value) }));
    $("ev-sink").addEventListener("change", (e) => set({ sinkZ: e.target.value === "" ? null : Number(e.target.value) }));
    $("ev-corners").addEventListener("change", (e) => set({ corners: e.target.checked }));
    $("ev-masks").addEventListener("change", (e) => set({ mask: e.target.checked }));
    $("ev-marker").addEventListener("change", (e) => set({ marker: e.target.checked }));
    const pan = $("ev-panel");
    DATA.panels.forEach((p, i) => pan.add(new Option(p.label, String(i))));
    pan.addEventListener("change", () => set({ panel: Number(pan.value) }));
    const method = $("ev-method");
    for (const m of ["attention", ...Object.keys(DATA.methods || {})]) method.add(new Option(m, m));
    method.addEventListener("change", () => set({ method: method.value }));
    document.addEventListener("keydown", (e) => {
      if (e.key === "ArrowRight") set({ word: Math.min(DATA.words.length - 1, state.word + 1) });
      if (e.key === "ArrowLeft") set({ word: Math.max(0, state.word - 1) });
    });
    syncControls();
    draw();
  }
  // a part's view grids index the part's own tokens (0..members.length-1); members place them in the run's [V]
  for (const part of DATA.parts) for (const v of part.views) v.local = v.index;
  window.emergenceViewer = {
    data: DATA, state, set,
    current: () => current && { width: current.width, height: current.height, peak: current.peak, lo: current.lo, hi: current.hi,
                                heat: Array.from(current.heat) },
  };
  build();
})();

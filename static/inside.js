// The inside view: how the served network read the drawing on the pad (POST /explain). It follows each
// answer draw.js shows, once opened, so the answer itself never waits for it.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const section = $("inside");
  const openButton = $("inside-open");
  const layout = $("layout");
  const whyMap = $("why-map");
  const sumBox = $("unit-sum");  // moved under the bars of the unit it adds up
  const mapButtons = [...document.querySelectorAll(".map-kind button")];
  const SHOWN_UNITS = 16;  // a vector of more units shows its TOP_UNITS largest as bars, all as a grid
  const TOP_UNITS = 8;
  let latest = null;       // the last answer on the page: {image, result}
  let shown = null;        // the explanation on screen: {body, image}
  let inFlight = false;
  let mapKind = "contribution";

  // An Encoded array from the API: bytes between low and high, row-major.
  function decode(e) {
    const bytes = Uint8Array.from(atob(e.data), (c) => c.charCodeAt(0));
    const out = new Float32Array(bytes.length);
    const step = (e.high - e.low) / 255;
    for (let i = 0; i < bytes.length; i++) out[i] = e.low + bytes[i] * step;
    return out;
  }

  // A value as a colour: white to black for values that are never negative, blue-white-red otherwise.
  function colour(v, low, high) {
    if (low >= 0) {
      const g = Math.round(255 * (1 - (v - low) / ((high - low) || 1)));
      return [g, g, g];
    }
    const m = Math.max(-low, high) || 1;
    const t = Math.min(1, Math.abs(v) / m);
    return v >= 0 ? [255, Math.round(255 * (1 - t)), Math.round(255 * (1 - t))]
      : [Math.round(255 * (1 - t)), Math.round(255 * (1 - t)), 255];
  }

  // One channel of an (h, w, c) array as a small canvas, drawn pixel for pixel and scaled by CSS.
  function mapCanvas(values, h, w, c, channel, low, high, scale, label) {
    const cv = document.createElement("canvas");
    cv.width = w; cv.height = h;
    cv.style.width = w * scale + "px"; cv.style.height = h * scale + "px";
    cv.setAttribute("role", "img");
    cv.setAttribute("aria-label", label);
    const ctx = cv.getContext("2d");
    const img = ctx.createImageData(w, h);
    for (let i = 0; i < h * w; i++) {
      const [r, g, b] = colour(values[i * c + channel], low, high);
      img.data.set([r, g, b, 255], 4 * i);
    }
    ctx.putImageData(img, 0, 0);
    return cv;
  }

  function shape(s) { return s.join("\u00d7"); }
  function num(v) { return Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 1 ? v.toFixed(2) : v.toFixed(3); }

  // Dense-like vectors: a bar per unit, the largest first when there are many; a dense layer's units
  // can be clicked for their sum.
  function bars(layer, onUnit) {
    const order = layer.values.map((v, i) => [v, i]);
    const many = order.length > SHOWN_UNITS;
    if (many) order.sort((a, b) => b[0] - a[0]);
    const top = order.slice(0, many ? TOP_UNITS : SHOWN_UNITS);
    const m = Math.max(...layer.values.map(Math.abs)) || 1;
    const ol = document.createElement("ol");
    ol.className = "bars";
    for (const [v, i] of top) {
      const li = document.createElement("li");
      const el = document.createElement(onUnit ? "button" : "span");
      el.className = "unit";
      if (onUnit) {
        el.type = "button";
        el.addEventListener("click", () => onUnit(layer.index, i, ol));
        el.setAttribute("aria-label", `unit ${i}: ${num(v)}; show its sum`);
      }
      const bar = document.createElement("span");
      bar.className = "bar " + (v < 0 ? "neg" : "pos");
      bar.style.width = (100 * Math.abs(v) / m).toFixed(1) + "%";
      el.innerHTML = `<span class="idx">${i}</span>`;
      const track = document.createElement("span");
      track.className = "track";
      track.append(bar);
      const val = document.createElement("span");
      val.className = "val";
      val.textContent = num(v);
      el.append(track, val);
      li.append(el);
      ol.append(li);
    }
    return ol;
  }

  function layerItem(layer, body) {
    const li = document.createElement("li");
    li.dataset.kind = layer.kind;
    const h = document.createElement("h4");
    h.textContent = `${layer.index} \u00b7 ${layer.name} \u2192 ${shape(layer.shape)}`;
    li.append(h);
    if (layer.maps && layer.shape.length === 1) layer.values = Array.from(decode(layer.maps));  // a long vector
    if (!layer.values) {
      const [H, W] = layer.shape;
      const C = layer.maps.shape[2];  // all channels, or the most active (layer.channels says which)
      const values = decode(layer.maps);
      const grid = document.createElement("div");
      grid.className = "maps";
      const scale = Math.max(2, Math.round(48 / W));  // CSS pixels per value: every map about 48 px wide
      for (let c = 0; c < C; c++) {
        const channel = layer.channels ? layer.channels[c] : c;
        grid.append(mapCanvas(values, H, W, C, c, layer.maps.low, layer.maps.high, scale, `channel ${channel}`));
      }
      if (layer.channels) {
        const p = document.createElement("p");
        p.className = "muted small";
        p.textContent = `the ${C} most active of ${layer.shape[2]} channels`;
        li.append(p);
      }
      li.append(grid);
    } else {
      // The whole vector as a grid of cells (reading order), beside its largest units as bars.
      const n = layer.values.length;
      const cols = n > SHOWN_UNITS ? Math.ceil(Math.sqrt(n)) : n;
      const rows = Math.ceil(n / cols);
      const padded = Float32Array.from({ length: rows * cols }, (_, i) => (i < n ? layer.values[i] : 0));
      const low = Math.min(0, ...layer.values), high = Math.max(0, ...layer.values);
      const row = document.createElement("div");
      row.className = "vector";
      row.append(mapCanvas(padded, rows, cols, 1, 0, low, high, Math.max(3, Math.round(96 / cols)),
        `all ${n} values`));
      const side = document.createElement("div");
      const same = { flatten: "the previous layer's values in one row", dropout: "the previous layer's values: dropout is off when answering" };
      const note = same[layer.kind] || (n > SHOWN_UNITS ? `the ${TOP_UNITS} largest of ${n}` : "");
      if (note) { const p = document.createElement("p"); p.className = "muted small"; p.textContent = note; side.append(p); }
      if (!same[layer.kind]) side.append(bars(layer, layer.kind === "dense" ? (l, u, at) => unitSum(l, u, null, at) : null));
      row.append(side);
      li.append(row);
    }
    return li;
  }

  // The dense stacks' equations in the tutorial's notation (Z1 = W1 X + b1, ...), with this input's values.
  function equations(body) {
    const rows = [];
    let k = 0;
    for (const layer of body.layers) {
      if (layer.kind === "dense") {
        k++;
        const x = k === 1 ? "X" : `A${k - 1}`;
        rows.push({ text: `Z${k} = W${k} ${x} + b${k}`, layer, name: `Z${k}` });
      } else if (layer.kind === "relu") rows.push({ text: `A${k} = ReLU(Z${k})`, layer, name: `A${k}` });
    }
    const probs = body.prediction.probabilities;
    const list = $("equation-rows");
    const items = [];
    const x = document.createElement("li");
    x.innerHTML = `<code>X</code> <span class="muted">(784)</span>: the 28\u00d728 input, row by row, 0 to 1 `;
    x.append(mapCanvas(decode(body.input), 28, 28, 1, 0, 0, 1, 2, "the input X"));
    items.push(x);
    for (const row of rows) {
      const li = document.createElement("li");
      const n = row.layer.shape[0];
      li.innerHTML = `<code>${row.text}</code> <span class="muted">(${n})${n > SHOWN_UNITS ? `: the ${TOP_UNITS} largest` : ""}</span> `;
      li.append(bars(row.layer, row.name.startsWith("Z") ? (l, u, at) => unitSum(l, u, row.name, at) : null));
      items.push(li);
    }
    const out = document.createElement("li");
    out.innerHTML = `<code>A${k} = softmax(Z${k} / T)</code>, T = ${body.temperature.toFixed(3)} ` +
      `<span class="muted">(10)</span>: ` + probs.map((p, d) => `${d}: ${(100 * p).toFixed(1)}%`).join(", ");
    items.push(out);
    list.replaceChildren(...items);
  }

  function pixelName(j) { return `x[${j}] (row ${Math.floor(j / 28)}, column ${j % 28})`; }

  // One dense unit's value as its sum: the largest terms w * x, the rest added up, and the bias; shown
  // under the bars it was clicked in.
  async function unitSum(layerIndex, unit, name, anchor) {
    if (!shown) return;
    const box = sumBox;
    anchor.after(box);
    box.hidden = false;
    box.textContent = "Adding up\u2026";
    const body = await post(`/explain?layer=${layerIndex}&unit=${unit}`, shown.image);
    if (!body || !body.unit_sum) { box.textContent = "Could not get that unit's sum."; return; }
    const s = body.unit_sum;
    const pixels = body.layers.slice(0, layerIndex).every((l) => l.kind === "flatten");  // it reads the image
    const input = (j) => pixels ? pixelName(j) : `a[${j}]`;
    const label = name ? `${name}[${unit}]` : `layer ${layerIndex}, unit ${unit}`;
    box.dataset.layer = String(layerIndex);
    box.dataset.unit = String(unit);
    box.replaceChildren();
    const h = document.createElement("h4");
    h.textContent = `${label} = \u03a3 w \u00d7 x + b = ${num(s.value)}`;
    const ol = document.createElement("ol");
    ol.className = "terms";
    for (const t of s.terms) {
      const li = document.createElement("li");
      li.textContent = `w ${num(t.weight)} \u00d7 ${input(t.input)} ${num(t.x)} = ${num(t.weight * t.x)}`;
      ol.append(li);
    }
    const rest = document.createElement("p");
    rest.className = "small";
    rest.textContent = `+ the other ${s.rest_count} terms: ${num(s.rest)}; + bias ${num(s.bias)}; ` +
      `total ${num(s.terms.reduce((a, t) => a + t.weight * t.x, 0) + s.rest + s.bias)}.`;
    box.append(h, ol, rest);
  }

  // The attribution map over the input: the ink in grey, red where pixels pushed toward the answer, blue
  // toward the runner-up.
  function drawWhy() {
    if (!shown) return;
    const a = shown.body.attribution;
    const map = decode(a[mapKind]);
    const input = decode(shown.body.input);
    const m = a[mapKind].high || 1;
    const ctx = whyMap.getContext("2d");
    const img = ctx.createImageData(28, 28);
    for (let i = 0; i < 784; i++) {
      const ink = 255 - Math.round(150 * input[i]);
      const t = Math.min(1, Math.abs(map[i]) / m);
      const tint = map[i] >= 0 ? [255, 40, 40] : [40, 80, 255];
      const mix = (c) => Math.round(ink * (1 - t) + c * t);
      img.data.set([mix(tint[0]), mix(tint[1]), mix(tint[2]), 255], 4 * i);
    }
    const small = document.createElement("canvas");
    small.width = 28; small.height = 28;
    small.getContext("2d").putImageData(img, 0, 0);
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(small, 0, 0, whyMap.width, whyMap.height);
    const how = {
      contribution: `Each pixel's ink times the gradient of z${a.answer} \u2212 z${a.versus}: what the ink that is there did.`,
      gradient: `The gradient of z${a.answer} \u2212 z${a.versus} at every pixel, by the network's backward pass: ` +
        `where more ink would push toward ${a.answer} (red) or ${a.versus} (blue).`,
      occlusion: `How much z${a.answer} \u2212 z${a.versus} falls when each 4\u00d74 patch is erased, measured ` +
        `with one forward pass per patch.`,
    };
    $("why-how").textContent = how[mapKind];
    whyMap.dataset.map = mapKind;
  }

  function firstLayer(body) {
    const f = body.first_layer;
    const [n, h, w] = f.weights.shape;
    const values = decode(f.weights);
    const dense = f.kind === "dense";
    $("first-title").textContent = dense ? "First layer's units as templates" : "First layer's filters";
    $("first-note").textContent = (dense
      ? `Each unit's ${h * w} weights as a ${h}\u00d7${w} image (red adds, blue subtracts)`
      : `Each ${h}\u00d7${w} filter (red adds, blue subtracts)`) +
      (n < f.count ? `: the ${n} most active of ${f.count} for this drawing.` : `: all ${f.count}, most active first.`);
    const scale = dense ? 3 : 10;
    $("first-pictures").replaceChildren(...f.units.map((u, k) => {
      const fig = document.createElement("figure");
      fig.append(mapCanvas(values.subarray(k * h * w, (k + 1) * h * w), h, w, 1, 0, f.weights.low, f.weights.high,
        scale, `unit ${u}'s weights`));
      const cap = document.createElement("figcaption");
      cap.textContent = String(u);
      fig.append(cap);
      return fig;
    }));
  }

  function render(body, image, revision) {
    const started = performance.now();
    shown = { body, image };
    const a = body.attribution;
    const p = body.prediction;
    $("inside-network").textContent = `${body.network} \u00b7 version ${p.model_version} \u00b7 ` +
      `${body.layers.length} layers, answer ${a.answer}, runner-up ${a.versus}`;
    $("why-title").textContent = p.uncertain ? `Not sure: ${a.answer} or ${a.versus}? Why` :
      `Why ${a.answer} and not ${a.versus}?`;
    $("why-legend").innerHTML = `<span class="swatch pos"></span> pushed toward ${a.answer} ` +
      `<span class="swatch neg"></span> pushed toward ${a.versus}; logit gap ${num(a.logit_gap)}`;
    drawWhy();
    firstLayer(body);
    const dense = body.layers.every((l) => l.kind === "dense" || l.kind === "relu");
    $("equations").hidden = !dense;
    if (dense) equations(body);
    sumBox.hidden = true;
    section.append(sumBox);  // out of the lists about to be replaced
    $("layers").replaceChildren(...body.layers.map((l) => layerItem(l, body)));
    $("inside-status").textContent = "";
    section.classList.remove("stale");
    section.dataset.revision = String(revision);
    section.dataset.version = p.model_version;
    section.dataset.explainedAt = performance.now().toFixed(1);
    section.dataset.renderMs = (performance.now() - started).toFixed(1);
  }

  async function post(path, image) {
    try {
      const response = await fetch(path, {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ image }),
      });
      return response.ok ? await response.json() : null;
    } catch (err) { return null; }
  }

  // The latest answer's explanation: one request at a time, and again if a newer answer came meanwhile.
  async function explainLatest() {
    if (section.hidden || !latest || inFlight) return;
    inFlight = true;
    const asked = latest;
    const revision = document.querySelector(".answer").dataset.revision;
    const body = await post("/explain", asked.image);
    inFlight = false;
    if (latest !== asked) { explainLatest(); return; }
    if (body) render(body, asked.image, revision);
    else $("inside-status").textContent = "The network's view could not be had for this drawing.";
  }

  document.addEventListener("digits:answered", (e) => {
    openButton.hidden = false;
    if (!e.detail.settled) return;  // more ink is coming: explain the drawing once it is finished
    latest = e.detail;
    explainLatest();
  });
  document.addEventListener("digits:blank", () => {
    latest = null;
    openButton.hidden = true;
    if (!section.hidden) $("inside-status").textContent = "Draw a digit to see how the network reads it.";
    section.classList.toggle("stale", true);
  });
  openButton.addEventListener("click", () => {
    const open = section.hidden;
    section.hidden = !open;
    openButton.setAttribute("aria-expanded", String(open));
    openButton.textContent = open ? "Hide the inside view" : "See inside the network";
    if (open) { explainLatest(); section.scrollIntoView({ behavior: "smooth", block: "start" }); }
  });
  for (const b of mapButtons) {
    b.addEventListener("click", () => {
      mapKind = b.dataset.map;
      for (const o of mapButtons) o.setAttribute("aria-pressed", String(o === b));
      drawWhy();
    });
  }
  // Number mode reads several digits: the inside view is of one.
  new MutationObserver(() => { if (layout.classList.contains("number-mode")) section.hidden = true; })
    .observe(layout, { attributes: true, attributeFilter: ["class"] });
})();

// The drawing pad: pointer events (mouse, finger, pen), live classification through /predict.
"use strict";
(() => {
  const canvas = document.getElementById("draw");
  const ctx = canvas.getContext("2d");
  const predictionEl = document.getElementById("prediction");
  const promptEl = document.getElementById("prompt");
  const uncertainEl = document.getElementById("uncertain");
  const notDigitEl = document.getElementById("not-digit");
  const confidenceEl = document.getElementById("confidence");
  const errorEl = document.getElementById("error");
  const inputImg = document.getElementById("model-input");
  const versionEl = document.getElementById("model-version");
  const rows = [...document.querySelectorAll("#probabilities li")];

  const PEN = 0.07;          // pen width as a fraction of the canvas width: the same look at any size
  const DEBOUNCE_MS = 120;   // classify this long after the last movement
  const strokes = [];        // each stroke: points [x, y] in 0..1 of the canvas, kept for undo and resizes
  let current = null;
  let timer = null;
  let inFlight = false;      // at most one request at a time...
  let pending = false;       // ...and one more after it if the drawing changed meanwhile
  let removals = 0;          // undo and clear count: an answer for ink that is gone is never shown

  // Crisp on high-density screens: the bitmap has devicePixelRatio pixels per CSS pixel.
  function resize() {
    const side = canvas.clientWidth;
    const dpr = window.devicePixelRatio || 1;
    canvas.width = Math.round(side * dpr);
    canvas.height = Math.round(side * dpr);
    redraw();
  }

  function penWidth() { return PEN * canvas.width; }

  function dot(x, y) {
    ctx.beginPath();
    ctx.arc(x * canvas.width, y * canvas.height, penWidth() / 2, 0, 2 * Math.PI);
    ctx.fill();  // a zero-length line draws nothing, so a tap needs a dot
  }

  function segment(a, b) {
    ctx.beginPath();
    ctx.moveTo(a[0] * canvas.width, a[1] * canvas.height);
    ctx.lineTo(b[0] * canvas.width, b[1] * canvas.height);
    ctx.stroke();
  }

  function setPen() {
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    ctx.lineWidth = penWidth();
    ctx.strokeStyle = "#000";
    ctx.fillStyle = "#000";
  }

  function redraw() {
    ctx.clearRect(0, 0, canvas.width, canvas.height);  // transparent background, as toBlob exports it
    setPen();
    for (const s of strokes) {
      dot(s[0][0], s[0][1]);
      for (let i = 1; i < s.length; i++) segment(s[i - 1], s[i]);
    }
  }

  // Pointer position in 0..1 of the drawing surface: inside the border and padding, whatever CSS scaling.
  function position(e) {
    const r = canvas.getBoundingClientRect();
    const cs = getComputedStyle(canvas);
    const left = r.left + canvas.clientLeft + parseFloat(cs.paddingLeft);
    const top = r.top + canvas.clientTop + parseFloat(cs.paddingTop);
    const w = canvas.clientWidth - parseFloat(cs.paddingLeft) - parseFloat(cs.paddingRight);
    const h = canvas.clientHeight - parseFloat(cs.paddingTop) - parseFloat(cs.paddingBottom);
    return [Math.min(Math.max((e.clientX - left) / w, 0), 1), Math.min(Math.max((e.clientY - top) / h, 0), 1)];
  }

  canvas.addEventListener("pointerdown", (e) => {
    if (e.button !== 0 && e.pointerType === "mouse") return;
    e.preventDefault();
    canvas.setPointerCapture(e.pointerId);
    const p = position(e);
    current = [p];
    strokes.push(current);
    setPen();
    dot(p[0], p[1]);
    schedule();
  });

  canvas.addEventListener("pointermove", (e) => {
    if (!current) return;
    const events = e.getCoalescedEvents ? e.getCoalescedEvents() : [e];
    for (const ev of events.length ? events : [e]) {
      const p = position(ev);
      segment(current[current.length - 1], p);
      current.push(p);
    }
    schedule();
  });

  function endStroke() {
    if (!current) return;
    current = null;
    schedule(0);
  }
  canvas.addEventListener("pointerup", endStroke);
  canvas.addEventListener("pointercancel", endStroke);

  function schedule(delay = DEBOUNCE_MS) {
    clearTimeout(timer);
    timer = setTimeout(classify, delay);
  }

  function showBlank() {
    predictionEl.textContent = "";
    promptEl.hidden = false;
    uncertainEl.hidden = true;
    notDigitEl.hidden = true;
    confidenceEl.textContent = "";
    errorEl.hidden = true;
    inputImg.hidden = true;
    for (const row of rows) setRow(row, 0, false);
  }

  function setRow(row, p, best) {
    row.querySelector(".fill").style.width = (100 * p).toFixed(1) + "%";
    row.querySelector(".pct").textContent = (100 * p).toFixed(p < 0.1 ? 1 : 0) + "%";
    row.classList.toggle("best", best);
  }

  // The two most likely digits, for "Not sure: 4 or 9?".
  function twoBest(probabilities) {
    const order = probabilities.map((p, d) => [p, d]).sort((a, b) => b[0] - a[0]);
    return [order[0][1], order[1][1]];
  }

  function show(result) {
    promptEl.hidden = true;
    errorEl.hidden = true;
    // Rather than a confident wrong answer: say it is not a digit, or which two digits it might be.
    notDigitEl.hidden = !result.not_a_digit;
    predictionEl.textContent = result.not_a_digit ? "" : String(result.digit);
    const [first, second] = twoBest(result.probabilities);
    uncertainEl.textContent = `Not sure: ${first} or ${second}?`;
    uncertainEl.hidden = !result.uncertain || result.not_a_digit;
    confidenceEl.textContent = result.not_a_digit ? "" : (100 * result.confidence).toFixed(1) + "% sure";
    rows.forEach((row, d) => setRow(row, result.probabilities[d], d === result.digit));
    if (result.input_png) {
      inputImg.src = "data:image/png;base64," + result.input_png;
      inputImg.hidden = false;
    }
    versionEl.textContent = result.model_version;
  }

  function showError(message) {
    errorEl.textContent = message;
    errorEl.hidden = false;
  }

  async function classify() {
    if (!strokes.length) { showBlank(); return; }
    if (inFlight) { pending = true; return; }
    inFlight = true;
    const sentAfter = removals;
    try {
      const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
      const form = new FormData();
      form.append("file", blob, "canvas.png");
      const response = await fetch("/predict?return_input=true", { method: "POST", body: form });
      const body = await response.json().catch(() => ({}));
      if (!strokes.length) showBlank();
      else if (sentAfter !== removals) pending = true;  // the drawing lost strokes meanwhile: ask again
      else if (response.ok) show(body);
      else if (response.status === 422) showBlank();  // no ink yet: keep prompting
      else showError("Could not classify: " + (body.detail || response.statusText));
    } catch (err) {
      showError("The server did not answer. Is it running?");
    } finally {
      inFlight = false;
      if (pending) { pending = false; classify(); }
    }
  }

  function undo() {
    removals++;
    strokes.pop();
    current = null;
    redraw();
    schedule(0);
  }

  function clear() {
    removals++;
    strokes.length = 0;
    current = null;
    redraw();
    showBlank();
  }

  document.getElementById("undo").addEventListener("click", undo);
  document.getElementById("clear").addEventListener("click", clear);
  document.addEventListener("keydown", (e) => {
    if ((e.ctrlKey || e.metaKey) && e.key.toLowerCase() === "z") { e.preventDefault(); undo(); }
    else if (e.key === "Escape") { e.preventDefault(); clear(); }
  });
  window.addEventListener("resize", resize);
  resize();
  showBlank();
})();

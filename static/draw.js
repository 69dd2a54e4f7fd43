// The drawing pad: pointer events (mouse, finger, pen), live reading through /predict (one digit) or
// /read (a number: each digit boxed on the pad, each correctable on its own).
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
  const photoInput = document.getElementById("photo");
  const photoFigure = document.getElementById("photo-figure");
  const photoPreview = document.getElementById("photo-preview");
  const layout = document.getElementById("layout");
  const boxesEl = document.getElementById("boxes");
  const numberAnswer = document.getElementById("number-answer");
  const numberEl = document.getElementById("number");
  const numberUnsure = document.getElementById("number-uncertain");
  const numberDetail = document.getElementById("number-detail");
  const chipsEl = document.getElementById("digits");
  const picker = document.getElementById("digit-picker");
  const pickerTitle = document.getElementById("picker-title");
  const numberThanks = document.getElementById("number-thanks");
  const modeButtons = { digit: document.getElementById("mode-digit"), number: document.getElementById("mode-number") };
  let mode = location.hash === "#number" ? "number" : "digit";
  let reading = null;        // the number on screen: {result, sent}
  let picked = null;         // the index of the digit being corrected
  const PHOTO_SIDE = 1600;   // a photo is sent at most this large, as JPEG: a phone's 12 MP in ~0.4 MB

  const PEN = 0.07;          // pen width as a fraction of the canvas width: the same look at any size
  const SEND_SIDE = 128;     // longest side of the image sent: the server makes it 20 px anyway
  const NUMBER_SIDE = 640;   // a number is sent larger: 12 digits side by side keep ~50 px each
  const answerEl = document.querySelector(".answer");
  const correctEl = document.getElementById("correct");
  const thanksEl = document.getElementById("thanks");
  const DEBOUNCE_MS = 120;   // classify this long after the last movement
  const strokes = [];        // each stroke: points [x, y] in 0..1 of the canvas, kept for undo and resizes
  let current = null;
  let timer = null;
  let inFlight = false;      // at most one request at a time...
  let pending = false;       // ...and one more after it if the drawing changed meanwhile
  let removals = 0;          // undo and clear count: an answer for ink that is gone is never shown
  let revision = 0;          // every change to the drawing; the answer panel says which one it answers
  let shown = null;          // the image and answer on screen, for a correction: {image, result}
  let sentCrop = null;       // where the last image sent lies on the pad: {sx, sy, scale}, bitmap pixels

  // Crisp on high-density screens: the bitmap has devicePixelRatio pixels per CSS pixel.
  function resize() {
    const dpr = window.devicePixelRatio || 1;
    canvas.width = Math.round(canvas.clientWidth * dpr);
    canvas.height = Math.round(canvas.clientHeight * dpr);
    redraw();
    if (reading && reading.sent) drawBoxes(reading.result, reading.sent);
  }

  // Of the pad's height: a digit on the wide number pad is written as tall as on the square one.
  function penWidth() { return PEN * canvas.height; }

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
    ctx.clearRect(0, 0, canvas.width, canvas.height);  // transparent background, as toDataURL exports it
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
    photoFigure.hidden = true;  // drawing again: the pad is what is read
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
    canvas.dataset.penUpAt = performance.now().toFixed(1);
    schedule(0);
  }
  canvas.addEventListener("pointerup", endStroke);
  canvas.addEventListener("pointercancel", endStroke);

  function schedule(delay = DEBOUNCE_MS) {
    canvas.dataset.revision = String(++revision);
    clearTimeout(timer);
    timer = setTimeout(classify, delay);
  }

  function showBlank() {
    predictionEl.textContent = "";
    promptEl.hidden = false;
    uncertainEl.hidden = true;
    notDigitEl.hidden = true;
    correctEl.hidden = true;
    shown = null;
    confidenceEl.textContent = "";
    errorEl.hidden = true;
    inputImg.hidden = true;
    for (const row of rows) setRow(row, 0, false);
    numberAnswer.hidden = true;
    boxesEl.replaceChildren();
    reading = null;
    picked = null;
    document.dispatchEvent(new CustomEvent("digits:blank"));
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

  // A classified image on screen: its answer, and the buttons that correct it.
  function answered(body, image, answeredRevision) {
    show(body);
    shown = { image, result: body };
    correctEl.hidden = false;
    thanksEl.textContent = "";
    answerEl.dataset.revision = String(answeredRevision);
    answerEl.dataset.answeredAt = performance.now().toFixed(1);
    // The inside view (inside.js) follows the answer of the finished drawing, never before it: not while
    // the pen is down, nor for a drawing that has changed since.
    const settled = !current && answeredRevision === revision;
    document.dispatchEvent(new CustomEvent("digits:answered", { detail: { image, result: body, settled } }));
  }

  // One image (a data URL) to /predict (one digit) or /read (a number: each digit with its box), with
  // the 28x28 input each digit was read as.
  async function send(path, image) {
    const response = await fetch(path + "?return_input=true", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ image }),
    });
    return { response, body: await response.json().catch(() => ({})) };
  }

  // A number read: the digits, the flags, a chip per digit and (for the pad) a box per digit over the ink.
  function numberRead(result, sent, answeredRevision) {
    promptEl.hidden = true;
    errorEl.hidden = true;
    reading = { result, sent };
    picked = null;
    picker.hidden = true;
    numberThanks.textContent = "";
    numberAnswer.hidden = false;
    numberEl.textContent = result.text;
    const unsureDigits = result.digits.filter((d) => d.uncertain || d.not_a_digit).length;
    numberUnsure.hidden = !result.uncertain;
    numberUnsure.textContent = result.count_uncertain ? "Not sure how many digits" : "Not sure";
    numberDetail.textContent = `${result.digits.length} digit${result.digits.length === 1 ? "" : "s"}` +
      (result.marks.length ? `, ${result.marks.length} mark${result.marks.length === 1 ? "" : "s"}` : "") +
      (unsureDigits ? `; ${unsureDigits} not sure (dashed)` : "") + ". Tap a digit to correct it.";
    chipsEl.replaceChildren(...result.digits.map((d, i) => {
      const li = document.createElement("li");
      const b = document.createElement("button");
      b.type = "button";
      b.className = "chip" + (d.uncertain || d.not_a_digit ? " unsure" : "");
      b.setAttribute("aria-label", `Digit ${i + 1}: read as ${d.not_a_digit ? "not a digit" : d.digit}; correct it`);
      const img = document.createElement("img");
      img.src = "data:image/png;base64," + d.input_png;
      img.alt = "";
      const label = document.createElement("strong");
      label.textContent = d.not_a_digit ? "?" : String(d.digit);
      const pct = document.createElement("span");
      pct.className = "pct";
      pct.textContent = (100 * d.confidence).toFixed(0) + "%";
      b.append(img, label, pct);
      b.addEventListener("click", () => pick(i));
      li.append(b);
      return li;
    }));
    if (sent) drawBoxes(result, sent); else boxesEl.replaceChildren();
    versionEl.textContent = result.model_version;
    answerEl.dataset.revision = String(answeredRevision);
    answerEl.dataset.answeredAt = performance.now().toFixed(1);
  }

  // Boxes come in the sent image's pixels; the sent image is a scaled crop of the pad's bitmap.
  function drawBoxes(result, sent) {
    const css = canvas.clientWidth / canvas.width;
    const border = canvas.clientLeft;
    boxesEl.replaceChildren(...result.digits.map((d, i) => {
      const el = document.createElement("div");
      el.className = "box" + (d.uncertain || d.not_a_digit ? " unsure" : "") + (i === picked ? " picked" : "");
      el.style.left = (border + (sent.sx + d.box.x / sent.scale) * css) + "px";
      el.style.top = (border + (sent.sy + d.box.y / sent.scale) * css) + "px";
      el.style.width = (d.box.width / sent.scale * css) + "px";
      el.style.height = (d.box.height / sent.scale * css) + "px";
      const b = document.createElement("button");
      b.type = "button";
      b.textContent = d.not_a_digit ? "?" : String(d.digit);
      b.setAttribute("aria-label", `Digit ${i + 1}, read as ${b.textContent}: correct it`);
      b.addEventListener("click", () => pick(i));
      el.append(b);
      return el;
    }));
  }

  function pick(i) {
    if (!reading) return;
    picked = i;
    const d = reading.result.digits[i];
    pickerTitle.textContent = `Digit ${i + 1} of ${reading.result.digits.length}, read as ` +
      `${d.not_a_digit ? "not a digit" : d.digit}: which is it?`;
    picker.hidden = false;
    numberThanks.textContent = "";
    boxesEl.querySelectorAll(".box").forEach((el, k) => el.classList.toggle("picked", k === i));
  }

  // A digit's correction is the 28x28 image that digit was read as: that digit alone, its neighbours
  // left out, which the review queue, the holdout and retraining take like any drawing.
  async function correctDigit(label) {
    if (!reading || picked === null) return;
    const d = reading.result.digits[picked];
    try {
      const response = await fetch("/feedback", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({
          image: "data:image/png;base64," + d.input_png, label,
          model_version: reading.result.model_version, predicted: d.digit,
        }),
      });
      const body = await response.json().catch(() => ({}));
      numberThanks.textContent = response.ok ? `Thanks: digit ${picked + 1} kept as a ${label} for review.`
        : "Not kept: " + (body.detail || response.statusText);
      if (response.ok) picker.hidden = true;
    } catch (err) { numberThanks.textContent = "Not kept: the server did not answer."; }
  }
  for (const b of document.querySelectorAll("#digit-picker .pick")) {
    b.addEventListener("click", () => correctDigit(Number(b.dataset.digit)));
  }

  function setMode(next) {
    mode = next;
    layout.classList.toggle("number-mode", mode === "number");
    for (const [name, b] of Object.entries(modeButtons)) b.setAttribute("aria-pressed", String(name === mode));
    canvas.setAttribute("aria-label", mode === "number"
      ? "Drawing area: write a number with a mouse, finger or pen" : "Drawing area: draw one digit with a mouse, finger or pen");
    promptEl.textContent = mode === "number" ? "Write a number on the pad." : "Draw a digit on the pad.";
    history.replaceState(null, "", mode === "number" ? "#number" : location.pathname + location.search);
    clear();
    resize();
  }
  modeButtons.digit.addEventListener("click", () => mode !== "digit" && setMode("digit"));
  modeButtons.number.addEventListener("click", () => mode !== "number" && setMode("number"));

  async function classify() {
    if (!strokes.length) { if (photoFigure.hidden) showBlank(); return; }
    if (inFlight) { pending = true; return; }
    inFlight = true;
    const sentAfter = removals;
    const sentRevision = revision;
    const sentMode = mode;
    const sentImage = inkImage(mode === "number" ? NUMBER_SIDE : SEND_SIDE);
    const sent = sentCrop;
    try {
      const { response, body } = await send(sentMode === "number" ? "/read" : "/predict", sentImage);
      if (!strokes.length) showBlank();
      else if (sentAfter !== removals || sentMode !== mode) pending = true;  // the drawing changed meanwhile: ask again
      else if (response.ok && sentMode === "number") numberRead(body, sent, sentRevision);
      else if (response.ok) answered(body, sentImage, sentRevision);
      else if (response.status === 422 && sentMode === "number" && !/^no ink/.test(body.detail || "")) {
        showBlank();  // the last reading is not of this drawing any more
        showError(body.detail || "Not a number");  // more than 12 digits, a page of writing
      }
      else if (response.status === 422) showBlank();  // no ink yet: keep prompting
      else if (response.status === 503 && response.headers.get("Retry-After")) {
        // The server is busy and says when to come back: ask again then (the drawing may have changed).
        showError("The server is busy; trying again in a moment.");
        setTimeout(classify, 1000 * Math.min(5, Number(response.headers.get("Retry-After")) || 1));
      }
      else showError("Could not classify: " + (body.detail || response.statusText));
    } catch (err) {
      showError("The server did not answer. Is it running?");
    } finally {
      inFlight = false;
      if (pending) { pending = false; classify(); }
    }
  }

  // The drawing cropped to its ink (with the pen's margin) and scaled to at most SEND_SIDE pixels, as a
  // PNG data URL. toDataURL, not toBlob: Chromium runs toBlob as an idle task, measured at about one
  // second per call, where toDataURL takes a few milliseconds. Cropping and scaling here only saves
  // bytes: the server's normalisation (crop, 20 px, centre of mass) stays the one that counts.
  function inkImage(side = SEND_SIDE) {
    let [x0, y0, x1, y1] = [1, 1, 0, 0];
    for (const s of strokes) for (const [x, y] of s) {
      x0 = Math.min(x0, x); y0 = Math.min(y0, y); x1 = Math.max(x1, x); y1 = Math.max(y1, y);
    }
    const margin = PEN;  // half the pen on each side, and as much again of background
    const W = canvas.width, H = canvas.height;
    const sx = Math.max(0, Math.floor((x0 - margin) * W)), sy = Math.max(0, Math.floor((y0 - margin) * H));
    const sw = Math.min(W, Math.ceil((x1 + margin) * W)) - sx, sh = Math.min(H, Math.ceil((y1 + margin) * H)) - sy;
    const scale = Math.min(1, side / Math.max(sw, sh));
    const out = document.createElement("canvas");
    out.width = Math.max(1, Math.round(sw * scale));
    out.height = Math.max(1, Math.round(sh * scale));
    const octx = out.getContext("2d");
    octx.imageSmoothingQuality = "high";
    octx.drawImage(canvas, sx, sy, sw, sh, 0, 0, out.width, out.height);
    const image = out.toDataURL("image/png");
    sentCrop = { sx, sy, scale };
    return image;
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
    photoFigure.hidden = true;
    redraw();
    showBlank();
  }

  // A photo or scan of paper, read by the same /predict: turned upright by the browser (EXIF), made at
  // most PHOTO_SIDE pixels, sent as a JPEG data URL; its answer can be corrected like a drawing's.
  async function photoImage(file) {
    const bitmap = await createImageBitmap(file, { imageOrientation: "from-image" });
    const scale = Math.min(1, PHOTO_SIDE / Math.max(bitmap.width, bitmap.height));
    const out = document.createElement("canvas");
    out.width = Math.max(1, Math.round(bitmap.width * scale));
    out.height = Math.max(1, Math.round(bitmap.height * scale));
    const octx = out.getContext("2d");
    octx.imageSmoothingQuality = "high";
    octx.drawImage(bitmap, 0, 0, out.width, out.height);
    return out.toDataURL("image/jpeg", 0.92);
  }

  async function readPhoto(file) {
    clear();
    let image;
    try { image = await photoImage(file); } catch (err) {
      showError("That file is not an image this browser can read.");
      return;
    }
    photoPreview.src = image;
    photoFigure.hidden = false;
    promptEl.hidden = true;
    const photoRevision = ++revision;
    try {
      const asNumber = mode === "number";
      const { response, body } = await send(asNumber ? "/read" : "/predict", image);
      if (photoFigure.hidden || revision !== photoRevision) return;  // cleared or drawn on meanwhile
      if (response.ok && asNumber) numberRead(body, null, photoRevision);
      else if (response.ok) answered(body, image, photoRevision);
      else if (response.status === 422) showError(`Not ${asNumber ? "a number" : "one digit"} in this photo: ` + (body.detail || ""));
      else showError("Could not read the photo: " + (body.detail || response.statusText));
    } catch (err) {
      showError("The server did not answer. Is it running?");
    }
  }
  document.getElementById("use-photo").addEventListener("click", () => photoInput.click());
  photoInput.addEventListener("change", () => {
    const file = photoInput.files[0];
    photoInput.value = "";  // choosing the same file again is a new reading
    if (file) readPhoto(file);
  });

  // A correction sends the very image that was classified, the digit it really is, and what was shown.
  async function correct(label) {
    if (!shown) return;
    const { image, result } = shown;
    try {
      const response = await fetch("/feedback", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ image, label, model_version: result.model_version, predicted: result.digit }),
      });
      const body = await response.json().catch(() => ({}));
      if (response.ok) thanksEl.textContent = label === result.digit && !result.not_a_digit
        ? "Thanks: noted as right." : `Thanks: kept as a ${label} for review.`;
      else thanksEl.textContent = "Not kept: " + (body.detail || response.statusText);
    } catch (err) { thanksEl.textContent = "Not kept: the server did not answer."; }
  }
  document.getElementById("right").addEventListener("click", () => shown && correct(shown.result.digit));
  for (const b of document.querySelectorAll(".correct-buttons .digit")) {
    b.addEventListener("click", () => correct(Number(b.dataset.digit)));
  }

  document.getElementById("undo").addEventListener("click", undo);
  document.getElementById("clear").addEventListener("click", clear);
  document.addEventListener("keydown", (e) => {
    if ((e.ctrlKey || e.metaKey) && e.key.toLowerCase() === "z") { e.preventDefault(); undo(); }
    else if (e.key === "Escape") { e.preventDefault(); clear(); }
    else if (/^[0-9]$/.test(e.key) && !e.ctrlKey && !e.metaKey && !e.altKey) {
      if (mode === "number") { if (picked !== null) correctDigit(Number(e.key)); }
      else if (shown) correct(Number(e.key));
    }
  });
  window.addEventListener("resize", resize);
  if (mode === "number") setMode("number");
  resize();
  showBlank();
})();

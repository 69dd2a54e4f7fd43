// The admin page: token for this tab, training runs with live progress, model versions and rollback.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const TOKEN_KEY = "digits-admin-token";
  let streamAbort = null;
  let watchedJob = null;
  let points = [];
  // The job states that mean "not finished yet", as the server defines them (rendered into the page).
  const ACTIVE_STATES = $("admin").dataset.activeStates.split(",");
  const isActive = (job) => ACTIVE_STATES.includes(job.status);

  function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }

  function message(text, kind = "error") {
    const el = $("message");
    el.textContent = text || "";
    el.className = kind === "info" ? "info" : "";
  }

  async function api(path, options = {}) {
    const headers = { Authorization: "Bearer " + token(), ...(options.headers || {}) };
    const response = await fetch(path, { ...options, headers });
    const body = await response.json().catch(() => ({}));
    if (response.status === 401) {
      signOut();
      throw new Error("The admin token was refused. Check it and sign in again.");
    }
    if (!response.ok) {
      const detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
      throw new Error(`${response.status}: ${detail || response.statusText}`);
    }
    return body;
  }

  function el(tag, text, attrs = {}) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    return node;
  }

  const pct = (x) => (x === null || x === undefined ? "–" : (100 * x).toFixed(2) + "%");
  const when = (t) => (t ? new Date(t * 1000).toLocaleString() : "–");
  const secs = (s) => (s === null || s === undefined ? "–" : s < 120 ? s.toFixed(1) + " s" : (s / 60).toFixed(1) + " min");

  // ---- sign in --------------------------------------------------------------------------------

  async function signIn(value) {
    sessionStorage.setItem(TOKEN_KEY, value);
    try {
      await api("/train");
    } catch (err) {
      message(err.message);
      return;
    }
    message("");
    $("admin").hidden = false;
    $("sign-out").hidden = false;
    $("token").value = "";
    $("token").placeholder = "signed in";
    await refresh();
  }

  function signOut() {
    sessionStorage.removeItem(TOKEN_KEY);
    $("admin").hidden = true;
    $("sign-out").hidden = true;
    $("token").placeholder = "";
    if (streamAbort) streamAbort.abort();
  }

  $("login").addEventListener("submit", (e) => { e.preventDefault(); signIn($("token").value.trim()); });
  $("sign-out").addEventListener("click", () => { signOut(); message("Signed out.", "info"); });

  // ---- training -------------------------------------------------------------------------------

  $("train-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const form = new FormData(e.target);
    const body = { preset: form.get("preset"), activate: form.get("always") ? "always" : "if_better",
                   feedback: form.get("feedback") ? "include" : "exclude" };
    for (const key of ["epochs", "batch_size", "augment_shift", "seed"]) {
      if (form.get(key) !== "") body[key] = parseInt(form.get(key), 10);
    }
    for (const key of ["lr", "weight_decay"]) if (form.get(key) !== "") body[key] = parseFloat(form.get(key));
    for (const key of ["optimizer", "schedule"]) if (form.get(key)) body[key] = form.get(key);
    if (body.preset === "finetune" && form.get("start_from")) body.start_from = form.get("start_from");
    if (form.get("layers").trim()) body.layers = form.get("layers").split(/[\s,]+/).filter(Boolean).map(Number);
    try {
      const job = await api("/train", { method: "POST", body: JSON.stringify(body),
                                        headers: { "Content-Type": "application/json" } });
      message(`Training run ${job.id} started.`, "info");
      watch(job);
      await refreshHistory();
    } catch (err) {
      message("Training was not started: " + err.message);
    }
  });

  $("cancel").addEventListener("click", async () => {
    if (!watchedJob) return;
    try {
      await api(`/train/${watchedJob}/cancel`, { method: "POST" });
      message("Cancelling…", "info");
    } catch (err) { message(err.message); }
  });

  function showJob(job) {
    $("run").hidden = false;
    const status = $("run-status");
    status.textContent = job.status;
    status.className = "badge " + job.status;
    // With training workers (several machines), say which one runs it, or that it waits for one.
    status.title = job.worker ? `on worker ${job.worker}` : job.status === "queued" ? "waiting to start" : "";
    $("cancel").disabled = !isActive(job);
  }

  function showProgress(p) {
    $("progress-bar").value = p.step / p.total_steps;
    const val = p.val_acc === null ? "" : `, validation ${pct(p.val_acc)}`;
    $("progress-text").textContent =
      `epoch ${p.epoch}/${p.epochs}, step ${p.step}/${p.total_steps}, loss ${p.loss.toFixed(4)}, ` +
      `training accuracy ${pct(p.train_acc)}${val}, ${Math.round(p.samples_per_s).toLocaleString()} samples/s, ` +
      `ETA ${secs(p.eta_s)}`;
  }

  // EventSource cannot send an Authorization header, so read the SSE stream with fetch.
  async function watch(job) {
    if (streamAbort) streamAbort.abort();
    streamAbort = new AbortController();
    watchedJob = job.id;
    points = [];
    showJob(job);
    drawChart();
    try {
      const response = await fetch(`/train/${job.id}/events`, {
        headers: { Authorization: "Bearer " + token() }, signal: streamAbort.signal,
      });
      if (!response.ok) throw new Error(`event stream: ${response.status}`);
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          handleEvent(buffer.slice(0, cut));
          buffer = buffer.slice(cut + 2);
        }
      }
    } catch (err) {
      if (err.name !== "AbortError") message("Lost the progress stream: " + err.message);
    }
  }

  function handleEvent(block) {
    let event = "message";
    let data = "";
    for (const line of block.split("\n")) {
      if (line.startsWith("event:")) event = line.slice(6).trim();
      else if (line.startsWith("data:")) data += line.slice(5).trim();
    }
    if (!data) return;
    const payload = JSON.parse(data);
    if (event === "progress") {
      points.push(payload);
      showProgress(payload);
      drawChart();
    } else if (event === "status") {
      showJob(payload);
      if (payload.progress) showProgress(payload.progress);
      if (!isActive(payload)) finished(payload);
    }
  }

  async function finished(job) {
    if (job.status === "succeeded") {
      const verdict = job.promoted ? "and activated" : "but not activated (the promotion gate kept the active model: see the run's result)";
      message(`Run ${job.id} finished: version ${job.version}, test accuracy ${pct(job.result.test_accuracy)}, ${verdict}.`,
              "info");
    } else if (job.status === "failed") {
      message(`Run ${job.id} failed: ${job.error}`);
    } else {
      message(`Run ${job.id} ${job.status}.`, "info");
    }
    await refresh();
  }

  // A small two-axis line chart: loss on the left, accuracies (0-1) on the right.
  function drawChart() {
    const c = $("chart");
    const dpr = window.devicePixelRatio || 1;
    c.width = Math.round(c.clientWidth * dpr);
    c.height = Math.round(c.clientHeight * dpr);
    const g = c.getContext("2d");
    g.scale(dpr, dpr);
    const W = c.clientWidth, H = c.clientHeight, pad = 30;
    g.clearRect(0, 0, W, H);
    g.strokeStyle = "#d5dae0";
    g.strokeRect(pad, 8, W - 2 * pad, H - pad - 8);
    g.fillStyle = "#5b6570";
    g.font = "11px system-ui, sans-serif";
    if (!points.length) { g.fillText("waiting for the first steps…", pad + 8, H / 2); return; }
    const total = points[points.length - 1].total_steps;
    const maxLoss = Math.max(...points.map((p) => p.loss), 1e-6);
    const x = (step) => pad + (W - 2 * pad) * (step / total);
    const yLoss = (v) => 8 + (H - pad - 8) * (1 - v / maxLoss);
    const yAcc = (v) => 8 + (H - pad - 8) * (1 - v);
    g.fillText(maxLoss.toFixed(2), 2, 16);
    g.fillText("0", 2, H - pad);
    g.fillText("100%", W - pad + 2, 16);
    g.fillText("step " + total, W - pad - 50, H - 10);
    const line = (color, pick, y) => {
      const pts = points.filter((p) => pick(p) !== null && pick(p) !== undefined);
      if (!pts.length) return;
      g.strokeStyle = color;
      g.lineWidth = 2;
      g.beginPath();
      pts.forEach((p, i) => (i ? g.lineTo(x(p.step), y(pick(p))) : g.moveTo(x(p.step), y(pick(p)))));
      g.stroke();
      if (pts.length === 1) { g.fillStyle = color; g.fillRect(x(pts[0].step) - 2, y(pick(pts[0])) - 2, 4, 4); }
    };
    line("#b3261e", (p) => p.loss, yLoss);
    line("#2459d6", (p) => p.train_acc, yAcc);
    line("#1f8a4c", (p) => p.val_acc, yAcc);
  }

  // ---- history and models ---------------------------------------------------------------------

  async function refreshHistory() {
    const { jobs } = await api("/train");
    const body = $("history").querySelector("tbody");
    body.replaceChildren();
    for (const job of jobs) {
      const tr = el("tr");
      tr.append(el("td", when(job.started || job.created)), el("td", job.preset, { class: "narrow-hide" }));
      const st = el("td");
      st.append(el("span", job.status, { class: "badge " + job.status }));
      if (job.worker) st.append(el("div", `on ${job.worker}`, { class: "small narrow-hide" }));
      if (job.error) st.append(el("div", job.error, { class: "small error" }));
      tr.append(st, el("td", secs(job.duration_s), { class: "narrow-hide" }),
                el("td", pct(job.result && job.result.test_accuracy)));
      tr.append(el("td", job.version ? job.version + (job.promoted ? " (activated)" : "") : "–"));
      body.append(tr);
    }
    const running = jobs.find(isActive);
    if (running && watchedJob !== running.id) watch(running);
  }

  function heatmap(confusion) {
    const table = el("table", null, { class: "heat", "aria-label": "Confusion matrix: rows true digit, columns predicted" });
    const head = el("tr");
    head.append(el("th", "t\\p"));
    for (let d = 0; d < 10; d++) head.append(el("th", d));
    table.append(head);
    confusion.forEach((row, t) => {
      const tr = el("tr");
      tr.append(el("th", t));
      const total = row.reduce((a, b) => a + b, 0) || 1;
      row.forEach((n, p) => {
        const share = n / total;
        const cell = el("td", n, { title: `true ${t}, predicted ${p}: ${n}` });
        const hue = t === p ? "36, 89, 214" : "179, 38, 30";
        const alpha = t === p ? share : Math.min(1, share * 20);
        cell.style.background = `rgba(${hue}, ${alpha.toFixed(3)})`;
        if (alpha > 0.55) cell.style.color = "#fff";
        tr.append(cell);
      });
      table.append(tr);
    });
    return table;
  }

  // A version's calibration: the reliability diagram (confidence against accuracy, on the held-out
  // drawings) on the left, accuracy of the answers kept against coverage on the right.
  function trustPlot(cal) {
    const canvas = el("canvas", null, { class: "trust-plot", width: 360, height: 170, role: "img",
      "aria-label": "Reliability diagram and accuracy at coverage on held-out drawings" });
    const ctx = canvas.getContext("2d");
    ctx.font = "11px system-ui, sans-serif";
    const panel = (x0, title, xLo, yLo, points, diagonal) => {
      const w = 150, h = 120, top = 20;
      const px = (x) => x0 + ((x - xLo) / (1 - xLo)) * w;
      const py = (y) => top + h - ((y - yLo) / (1 - yLo)) * h;
      ctx.strokeStyle = "#999"; ctx.strokeRect(x0, top, w, h);
      ctx.fillStyle = "#333"; ctx.fillText(title, x0, 12);
      ctx.fillText(String(xLo), x0, top + h + 12); ctx.fillText("1", x0 + w - 6, top + h + 12);
      ctx.fillText(String(yLo), x0 - 22, top + h); ctx.fillText("1", x0 - 10, top + 8);
      if (diagonal) { ctx.strokeStyle = "#bbb"; ctx.beginPath(); ctx.moveTo(px(xLo), py(yLo)); ctx.lineTo(px(1), py(1)); ctx.stroke(); }
      ctx.strokeStyle = "#2459d6"; ctx.fillStyle = "#2459d6"; ctx.beginPath();
      points.forEach(([x, y], i) => { const X = px(Math.max(x, xLo)), Y = py(Math.max(y, yLo)); i ? ctx.lineTo(X, Y) : ctx.moveTo(X, Y); });
      ctx.stroke();
      points.forEach(([x, y]) => ctx.fillRect(px(Math.max(x, xLo)) - 2, py(Math.max(y, yLo)) - 2, 4, 4));
    };
    panel(30, "reliability", 0, 0, cal.reliability.drawings || [], true);
    panel(205, "accuracy at coverage", 0.5, 0.95, cal.coverage.drawings || [], false);
    return canvas;
  }

  async function refreshModels() {
    const { versions } = await (await fetch("/models")).json();
    const body = $("models").querySelector("tbody");
    body.replaceChildren();
    versions.sort((a, b) => (b.metadata.created || "").localeCompare(a.metadata.created || ""));
    const startFrom = $("start-from"), chosen = startFrom.value;
    startFrom.replaceChildren(el("option", "the active version", { value: "" }));
    for (const v of versions) startFrom.append(el("option", v.version, { value: v.version }));
    startFrom.value = versions.some((v) => v.version === chosen) ? chosen : "";
    for (const v of versions) {
      const m = v.metadata;
      const tr = el("tr", null, { "data-version": v.version });
      const name = el("td");
      name.append(el("strong", v.version));
      if (v.active) name.append(" ", el("span", "active", { class: "badge active" }));
      if (v.metadata.parent) name.append(el("div", `fine-tuned from ${v.metadata.parent}`, { class: "small muted" }));
      const test = m.test || {};
      if (test.per_class) {
        const details = el("details");
        details.append(el("summary", "per class, confusion"));
        details.append(el("div", test.per_class.map((a, d) => `${d}: ${pct(a)}`).join("  "), { class: "small" }));
        if (test.confusion) details.append(heatmap(test.confusion));
        name.append(details);
      }
      if (m.calibration) {
        const c = m.calibration, ece = c.ece.drawings || {};
        const details = el("details");
        details.append(el("summary", "calibration"));
        details.append(el("div", `temperature ${c.temperature.toFixed(2)}, not sure below ${c.uncertain_below.toFixed(2)}; ` +
          `ECE on held-out drawings ${pct(ece.before)} → ${pct(ece.after)}` +
          (m.detector ? `; not a digit from ${m.detector.threshold.toFixed(2)}` : ""), { class: "small" }));
        details.append(trustPlot(c));
        name.append(details);
      }
      const real = v.holdout ? `${pct(v.holdout.accuracy)} (${v.holdout.n})` : "–";
      tr.append(name, el("td", v.architecture, { class: "narrow-hide" }), el("td", pct(test.accuracy)),
                el("td", pct(m.canvas && m.canvas.accuracy)), el("td", real, { class: "holdout" }),
                el("td", m.created || "–", { class: "narrow-hide" }));
      const action = el("td");
      const button = el("button", v.active ? "Active" : "Activate", { type: "button", "aria-label": `Activate ${v.version}` });
      button.disabled = v.active;
      button.addEventListener("click", async () => {
        try {
          await api(`/models/${encodeURIComponent(v.version)}/activate`, { method: "POST" });
          message(`Version ${v.version} is now served.`, "info");
          await refreshModels();
        } catch (err) { message("Not activated: " + err.message); }
      });
      action.append(button);
      tr.append(action);
      body.append(tr);
    }
  }

  // ---- review queue ---------------------------------------------------------------------------

  let reviewItems = [];
  let selected = 0;

  async function refreshReview() {
    const status = $("review-status").value;
    const query = status ? `?status=${status}&limit=200` : "?limit=200";
    const { total, items } = await api("/feedback" + query);
    reviewItems = items;
    selected = Math.min(selected, Math.max(0, items.length - 1));
    $("review-count").textContent = String(total);
    const grid = $("review-grid");
    grid.replaceChildren();
    items.forEach((it, i) => {
      const cell = el("div", null, { class: `review-item ${it.status}${it.suspicious ? " suspicious" : ""}`,
                                     role: "gridcell", "data-id": it.id, title: it.reasons.join("; ") });
      cell.append(el("img", null, { src: "data:image/png;base64," + it.input_png, alt: `drawing labelled ${it.label}` }));
      cell.append(el("div", `said ${it.label}, model ${it.predicted} (${Math.round(100 * it.confidence)}%)`));
      cell.append(el("div", it.status + (it.holdout ? " · holdout" : ""), { class: "muted" }));
      const buttons = el("div", null, { class: "review-buttons" });
      for (const [text, action] of [["Accept", "accept"], ["Reject", "reject"]]) {
        const b = el("button", text, { type: "button", "aria-label": `${text} correction ${it.id}` });
        b.addEventListener("click", (e) => { e.stopPropagation(); reviewAction([it.id], action); });
        buttons.append(b);
      }
      cell.append(buttons);
      cell.addEventListener("click", () => { selected = i; markSelected(); grid.focus(); });
      grid.append(cell);
    });
    markSelected();
  }

  function markSelected() {
    [...$("review-grid").children].forEach((c, i) => c.classList.toggle("selected", i === selected));
  }

  async function reviewAction(ids, action, label) {
    if (!ids.length) return;
    try {
      const body = { ids, action, ...(label === undefined ? {} : { label }) };
      await api("/feedback/review", { method: "POST", body: JSON.stringify(body),
                                      headers: { "Content-Type": "application/json" } });
      await refreshReview();
    } catch (err) { message("Review not saved: " + err.message); }
  }

  $("review-grid").addEventListener("keydown", (e) => {
    const item = reviewItems[selected];
    const perRow = Math.max(1, Math.floor($("review-grid").clientWidth / 120));
    const moves = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: perRow, ArrowUp: -perRow };
    if (e.key in moves) {
      selected = Math.min(Math.max(0, selected + moves[e.key]), reviewItems.length - 1);
      markSelected();
    } else if (item && e.key === "a") reviewAction([item.id], "accept");
    else if (item && e.key === "r") reviewAction([item.id], "reject");
    else if (item && /^[0-9]$/.test(e.key)) reviewAction([item.id], "relabel", Number(e.key));
    else return;
    e.preventDefault();
  });
  $("review-status").addEventListener("change", () => refreshReview().catch((err) => message(err.message)));
  $("accept-all").addEventListener("click", () => reviewAction(reviewItems.map((it) => it.id), "accept"));
  $("measure-holdout").addEventListener("click", async () => {
    try {
      await api("/models/holdout/evaluate", { method: "POST" });
      message("Every version was measured on the real drawings accepted so far.", "info");
      await refreshModels();
    } catch (err) { message("Not measured: " + err.message); }
  });

  async function refresh() {
    try {
      await Promise.all([refreshHistory(), refreshModels(), refreshReview()]);
    } catch (err) { message(err.message); }
  }

  if (token()) signIn(token());
})();

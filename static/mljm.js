// mljm pages: htmx glue (errors as toasts, refresh after actions), plots (uPlot), the new-job
// form, the file browser's uploads and the labelling workspace. No framework, no build step.
"use strict";

const HALPHA = 6562.8; // Å: Hα at rest, in air (6564.6 in vacuum; the shaded band covers both)
const COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f"];

function toast(message, ok) {
  const t = document.getElementById("toast");
  if (!t) return;
  t.textContent = message;
  t.className = ok ? "ok" : "";
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.textContent = ""; }, ok ? 2500 : 8000);
}

// The message of a failed request: the API's JSON `message`, or a page's error text.
function errorText(status, body) {
  try {
    const j = JSON.parse(body);
    if (j && j.message) return j.message;
  } catch (_) { /* not JSON */ }
  const doc = new DOMParser().parseFromString(body || "", "text/html");
  const m = doc.getElementById("error-message");
  return (m ? m.textContent : `request failed (${status})`).trim();
}

async function api(method, url, body) {
  const resp = await fetch(url, {
    method,
    headers: body === undefined ? {} : { "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await resp.text();
  if (!resp.ok) throw new Error(errorText(resp.status, text));
  return text ? JSON.parse(text) : null;
}

// ---- htmx glue -------------------------------------------------------------------------

document.addEventListener("htmx:responseError", (e) => {
  toast(errorText(e.detail.xhr.status, e.detail.xhr.responseText));
});
document.addEventListener("htmx:sendError", () => toast("the server did not answer"));
document.addEventListener("htmx:afterRequest", (e) => {
  const verb = (e.detail.requestConfig && e.detail.requestConfig.verb) || "get";
  if (!e.detail.successful || verb === "get") return;
  const after = e.detail.elt.dataset.after;
  if (after) { window.location.href = after; return; }
  htmx.trigger(document.body, "refresh");
});
// The job page asks for its results again when the phase it shows changes.
document.addEventListener("htmx:afterSwap", (e) => {
  const s = document.getElementById("summary");
  if (!s || !e.detail.target || e.detail.target.id !== "summary") return;
  if (document.body.dataset.phase && document.body.dataset.phase !== s.dataset.phase) {
    htmx.trigger(document.body, "phase-changed");
  }
  document.body.dataset.phase = s.dataset.phase;
});

// ---- plots -----------------------------------------------------------------------------

// The Hα region (±15 Å, where the classes differ) shaded, and the line itself dashed.
function markHalpha(u) {
  const [lo, hi] = [u.scales.x.min, u.scales.x.max];
  if (!(lo <= HALPHA && HALPHA <= hi)) return;
  const x = u.valToPos(HALPHA, "x", true);
  const ctx = u.ctx;
  ctx.save();
  const x0 = u.valToPos(Math.max(lo, HALPHA - 15), "x", true);
  const x1 = u.valToPos(Math.min(hi, HALPHA + 15), "x", true);
  ctx.fillStyle = "rgba(214, 39, 40, 0.08)";
  ctx.fillRect(x0, u.bbox.top, x1 - x0, u.bbox.height);
  ctx.strokeStyle = "rgba(214, 39, 40, 0.55)";
  ctx.setLineDash([5, 4]);
  ctx.lineWidth = 1.5 * devicePixelRatio;
  ctx.beginPath();
  ctx.moveTo(x, u.bbox.top);
  ctx.lineTo(x, u.bbox.top + u.bbox.height);
  ctx.stroke();
  ctx.restore();
}

// A zoomable line plot of `series` ([{label, y}]) over `x` into `el` (replacing its content).
function linePlot(el, x, series, opts) {
  el.textContent = "";
  const width = Math.max(el.clientWidth || 0, 320);
  const o = opts || {};
  const plot = new uPlot({
    width,
    height: o.height || 260,
    scales: { x: { time: false } },
    axes: [{ label: o.xlabel || "" }, { label: o.ylabel || "" }],
    legend: { show: series.length > 1 || !!o.legend },
    series: [{ label: o.xlabel || "x" }].concat(series.map((s, i) => ({
      label: s.label, stroke: COLOURS[i % COLOURS.length], width: 1.2,
      points: { show: !!o.points },
    }))),
    hooks: o.halpha ? { draw: [markHalpha] } : {},
  }, [x].concat(series.map((s) => s.y)), el);
  el.plot = plot;
  return plot;
}

function drawDataPlots(root) {
  root.querySelectorAll("[data-plot]").forEach((el) => {
    if (el.plot) return;
    const d = JSON.parse(el.dataset.json);
    const opts = { xlabel: el.dataset.xlabel, ylabel: el.dataset.ylabel, halpha: true };
    if (el.dataset.plot === "spectra") {
      linePlot(el, d.wave, d.spectra.map((s) => ({ label: s.filename, y: s.flux })), opts);
    } else {
      linePlot(el, d.wave, [{ label: "flux", y: d.flux }], opts);
    }
  });
}

// A scatter of 2-D points coloured by class, drawn on a canvas.
function scatter(canvas, xs, ys, labels, classes) {
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, pad = 12, legend = 18 * classes.length;
  ctx.clearRect(0, 0, w, h);
  const [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  const [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  const sx = (v) => pad + (v - x0) / ((x1 - x0) || 1) * (w - 2 * pad);
  const sy = (v) => pad + legend + (1 - (v - y0) / ((y1 - y0) || 1)) * (h - 2 * pad - legend);
  xs.forEach((x, i) => {
    ctx.fillStyle = COLOURS[labels[i] % COLOURS.length];
    ctx.beginPath();
    ctx.arc(sx(x), sy(ys[i]), 3, 0, 2 * Math.PI);
    ctx.fill();
  });
  ctx.font = "12px system-ui, sans-serif";
  classes.forEach((c, i) => {
    ctx.fillStyle = COLOURS[i % COLOURS.length];
    ctx.fillRect(pad, pad + 18 * i - 9, 10, 10);
    ctx.fillStyle = "#1d2330";
    ctx.fillText(c, pad + 16, pad + 18 * i);
  });
}

// ---- new job form ----------------------------------------------------------------------

function initNewJobForm(root) {
  const toggle = root.querySelector("#use-json");
  const fields = root.querySelector("fieldset.config");
  if (!toggle || !fields) return;
  toggle.addEventListener("change", () => { fields.disabled = toggle.checked; });
}

// ---- file browser ----------------------------------------------------------------------

function uploadOne(file, dir, li) {
  return new Promise((resolve) => {
    const bar = li.querySelector("progress");
    const status = li.querySelector(".status");
    const xhr = new XMLHttpRequest();
    xhr.open("POST", `/api/files/${encodeURIComponent(file.name)}/upload?parent_dir_path=${encodeURIComponent(dir)}`);
    xhr.upload.addEventListener("progress", (e) => {
      if (e.lengthComputable) bar.value = Math.round(100 * e.loaded / e.total);
    });
    xhr.addEventListener("load", () => {
      const ok = xhr.status >= 200 && xhr.status < 300;
      bar.value = ok ? 100 : bar.value;
      status.textContent = ok ? "uploaded" : errorText(xhr.status, xhr.responseText);
      li.className = ok ? "ok" : "failed";
      resolve(ok);
    });
    xhr.addEventListener("error", () => { status.textContent = "the server did not answer"; li.className = "failed"; resolve(false); });
    const form = new FormData();
    form.append("file", file, file.name);
    xhr.send(form);
  });
}

function initFiles(root) {
  const tools = root.querySelector(".file-tools");
  if (!tools) return;
  const dir = tools.dataset.path;
  const upload = tools.querySelector("#upload-form");
  upload.addEventListener("submit", async (e) => {
    e.preventDefault();
    const input = tools.querySelector("#upload-input");
    const list = tools.querySelector("#uploads");
    for (const file of Array.from(input.files)) {
      const li = document.createElement("li");
      li.innerHTML = '<span class="name"></span> <progress max="100" value="0"></progress> <span class="status"></span>';
      li.querySelector(".name").textContent = file.name;
      list.appendChild(li);
      await uploadOne(file, dir, li);
    }
    input.value = "";
    htmx.trigger(document.body, "refresh");
  });
  tools.querySelector("#mkdir-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const name = tools.querySelector("#mkdir-name");
    const error = tools.querySelector("#mkdir-error");
    try {
      // A URL resolves "." and ".." (even percent-encoded) before the server could refuse them.
      if (name.value === "." || name.value === "..") {
        throw new Error(`${JSON.stringify(name.value)} is not a valid file or directory name`);
      }
      await api("POST", `/api/files/directories/${encodeURIComponent(name.value)}?parent_dir_path=${encodeURIComponent(dir)}`);
      name.value = "";
      error.textContent = "";
      htmx.trigger(document.body, "refresh");
    } catch (err) { error.textContent = err.message; }
  });
}

// ---- labelling workspace ---------------------------------------------------------------

function initWorkspace(root) {
  const ws = root.querySelector("#workspace");
  if (!ws || ws.started) return;
  ws.started = true;
  const data = JSON.parse(ws.dataset.json);
  // The oracle batch and performance-estimation sample are on the page whole; the candidates
  // a page at a time (#ws-candidates, swapped by htmx), so the items are read from the rows.
  let items = [];
  const collect = () => {
    items = Array.from(ws.querySelectorAll(".ws-item")).map((row) => ({
      id: row.dataset.id,
      set: row.dataset.set,
      filename: row.querySelector(".fn").textContent,
      label: row.querySelector(".user-label").textContent,
      comment: row.dataset.comment || "",
      row,
    }));
  };
  collect();
  // Answers fetched once per spectrum, the last few hundred kept.
  const cached = (map, key, fetch) => {
    if (!map.has(key)) {
      map.set(key, fetch().catch((err) => ({ error: err.message })));
      if (map.size > 300) map.delete(map.keys().next().value);
    }
    return map.get(key);
  };
  const raws = new Map();
  const preps = new Map();
  const spectrum = (item) => cached(raws, item.filename, () => api("GET", `/api/spectra/${encodeURIComponent(item.filename)}`));
  const prepared = (item) => cached(preps, item.id, () => api("GET", `/api/labellings/${item.id}/prepared`));
  const undo = [];
  let current = -1;
  let currentId = null;
  let saving = Promise.resolve();
  let afterPage = null; // which item to select once a candidates page arrives: "first" or "last"
  const $ = (sel) => ws.querySelector(sel);
  const comment = $("#ws-comment");
  const saved = $("#ws-saved");

  function counter() {
    const oracle = items.filter((i) => i.set === "ORACLE");
    const done = oracle.filter((i) => i.label.trim() !== "").length;
    $("#counter").textContent = `${done}/${oracle.length} labelled`;
    const cont = $("#continue");
    if (cont) cont.disabled = done < oracle.length;
  }

  // A refused comment (422) is shown under the comment box, where it was typed.
  const commentError = $("#ws-comment-error");
  function save(item, patch) {
    saved.textContent = "saving…";
    saving = saving.then(() => api("PATCH", "/api/labellings/batch/", {
      labelling_ids: [item.id], labellings: [patch],
    })).then(() => {
      saved.textContent = "saved";
      if ("user_comment" in patch) commentError.textContent = "";
    }).catch((err) => {
      saved.textContent = "not saved";
      if ("user_comment" in patch) commentError.textContent = `${item.filename}: ${err.message}`;
      else toast(`${item.filename}: ${err.message}`);
    });
    return saving;
  }

  // Moving past the last candidate of a page (or before its first) turns the page.
  function turn(which) {
    const button = ws.querySelector(which === "first" ? "#ws-candidates .page-next" : "#ws-candidates .page-prev");
    if (!button) return false;
    afterPage = which;
    button.click();
    return true;
  }

  function move(delta) {
    const here = items[current];
    if (delta > 0 && current + 1 >= items.length && here && here.set === "CANDIDATE") { turn("first"); return; }
    if (delta < 0 && here && here.set === "CANDIDATE" && (current === 0 || items[current - 1].set !== "CANDIDATE") && turn("last")) return;
    show(current + delta);
  }

  async function show(i) {
    if (i < 0 || i >= items.length) return;
    current = i;
    const item = items[i];
    currentId = item.id;
    items.forEach((it) => it.row.classList.remove("selected"));
    item.row.classList.add("selected");
    item.row.scrollIntoView({ block: "nearest" });
    $("#ws-name").textContent = item.filename;
    comment.value = item.comment;
    ws.querySelectorAll(".class-btn").forEach((b) => b.classList.toggle("chosen", b.dataset.class === item.label));
    if (i + 1 < items.length) { spectrum(items[i + 1]); prepared(items[i + 1]); } // prefetch the next one
    const [s, p] = await Promise.all([spectrum(item), prepared(item)]);
    if (current !== i || currentId !== item.id) return; // the user moved on meanwhile
    if (s.error) {
      $("#ws-raw").textContent = s.error;
    } else {
      linePlot($("#ws-raw"), s.wave, [{ label: "flux", y: s.flux }], { xlabel: "wavelength (Å)", ylabel: "flux", halpha: true });
    }
    if (p.error) {
      $("#ws-prep").textContent = p.error;
    } else {
      linePlot($("#ws-prep"), p.wave, [{ label: "scaled flux", y: p.flux }], { xlabel: "wavelength (Å)", ylabel: "scaled flux", halpha: true });
    }
    const meta = $("#ws-meta");
    meta.textContent = "";
    if (!s.error) {
      for (const [k, v] of Object.entries(s)) {
        if (k === "wave" || k === "flux" || v === null) continue;
        const tr = meta.insertRow();
        tr.insertCell().textContent = k;
        tr.insertCell().textContent = v;
      }
    }
  }

  function setLabel(item, label, note) {
    item.label = label;
    item.comment = note;
    if (item.row) {
      item.row.querySelector(".user-label").textContent = label;
      item.row.dataset.comment = note;
    }
    counter();
    return save(item, { user_label: label, user_comment: note });
  }

  function label(cls) {
    if (current < 0) return;
    const item = items[current];
    undo.push({ item: { id: item.id, filename: item.filename }, label: item.label, comment: item.comment });
    if (undo.length > 100) undo.shift();
    setLabel(item, cls, comment.value);
    move(1);
  }

  function undoLast() {
    const last = undo.pop();
    if (!last) { toast("nothing to undo", true); return; }
    const at = items.findIndex((i) => i.id === last.item.id);
    // A spectrum on another page of candidates is put back through the API alone.
    setLabel(at >= 0 ? items[at] : last.item, last.label, last.comment);
    if (at >= 0) show(at);
  }

  ws.querySelectorAll(".class-btn").forEach((b) => b.addEventListener("click", () => label(b.dataset.class)));
  ws.addEventListener("click", (e) => {
    const row = e.target.closest(".ws-item");
    if (row) show(items.findIndex((i) => i.id === row.dataset.id));
  });
  ws.addEventListener("htmx:beforeRequest", (e) => {
    // A page of candidates is read once every label given is saved.
    if (e.target.closest("#ws-candidates") && saved.textContent === "saving…") {
      e.preventDefault();
      saving.then(() => htmx.trigger(e.target, "click"));
    }
  });
  ws.addEventListener("htmx:afterSwap", () => {
    collect();
    current = items.findIndex((i) => i.id === currentId);
    const page = items.filter((i) => i.set === "CANDIDATE");
    if (afterPage && page.length > 0) {
      const target = afterPage === "first" ? page[0] : page[page.length - 1];
      afterPage = null;
      show(items.indexOf(target));
    } else if (current >= 0) {
      items[current].row.classList.add("selected");
    }
  });
  let typing;
  comment.addEventListener("input", () => {
    if (current < 0) return;
    const item = items[current];
    clearTimeout(typing);
    typing = setTimeout(() => {
      item.comment = comment.value;
      if (item.row) item.row.dataset.comment = comment.value;
      save(item, { user_comment: comment.value });
    }, 500);
  });
  document.addEventListener("keydown", (e) => {
    if (!document.body.contains(ws)) return;
    const tag = (e.target.tagName || "").toLowerCase();
    if (tag === "textarea" || tag === "input" || tag === "select" || e.ctrlKey || e.metaKey || e.altKey) return;
    const n = Number(e.key);
    const buttons = ws.querySelectorAll(".class-btn");
    if (n >= 1 && n <= buttons.length) { label(buttons[n - 1].dataset.class); e.preventDefault(); }
    else if (e.key === "ArrowDown" || e.key === "ArrowRight" || e.key === "j") { move(1); e.preventDefault(); }
    else if (e.key === "ArrowUp" || e.key === "ArrowLeft" || e.key === "k") { move(-1); e.preventDefault(); }
    else if (e.key === "Backspace") { undoLast(); e.preventDefault(); }
  });
  const cont = $("#continue");
  if (cont) {
    cont.addEventListener("click", async () => {
      cont.disabled = true;
      try {
        await saving;
        const next = await api("POST", `/api/jobs/${data.job_id}/continue`);
        window.location.href = `/jobs/${next.job_id}`;
      } catch (err) { toast(err.message); counter(); }
    });
  }

  if (data.tsne_url) {
    api("GET", data.tsne_url).then((d) => scatter($("#ws-tsne"), d.x, d.y, d.labels, d.classes))
      .catch((err) => { $("#ws-tsne-note").textContent = err.message; });
  } else {
    $("#ws-tsne").hidden = true;
    $("#ws-tsne-note").textContent = "The first iteration has no training set yet.";
  }
  if (data.perf.length > 0) {
    linePlot($("#ws-perf"), data.perf.map((p) => p[0]), [{ label: "estimate", y: data.perf.map((p) => p[1]) }],
      { xlabel: "iteration", ylabel: "share of candidates confirmed", points: true, height: 220 });
  } else {
    $("#ws-perf").textContent = "No estimate yet: label the performance-estimation sample and continue.";
  }
  counter();
  if (items.length > 0) show(Math.max(0, items.findIndex((i) => i.label.trim() === "")));
}

function init(root) {
  drawDataPlots(root);
  initNewJobForm(root);
  initFiles(root);
  initWorkspace(root);
}

document.addEventListener("DOMContentLoaded", () => {
  const s = document.getElementById("summary");
  if (s) document.body.dataset.phase = s.dataset.phase;
  init(document);
  htmx.onLoad((el) => { if (el !== document.body) init(el); });
});

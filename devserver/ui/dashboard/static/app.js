// livelambda dashboard: vanilla JS, no build step. Everything comes from the dev server's JSON API
// (api/...) and its live feed (api/feed, Server-Sent Events); nothing is kept in the browser.
"use strict";

const MASK = "••••";
const TRUNCATED = /…\[truncated: ([\d,]+) more (characters|items|keys|nested levels|bytes of JSON[^\]]*)\]$/;
const OUTCOMES = {
  running: "running",
  ok: "ok",
  handler_error: "handler error",
  timeout: "timeout",
  crashed: "crashed",
  init_error: "init error",
  livelambda_error: "livelambda error",
};
const FAILED = new Set(["handler_error", "timeout", "crashed", "init_error", "livelambda_error"]);

const S = {
  rows: new Map(), // id -> summary (only those matching the filters)
  order: [], // ids, newest first
  rowCache: new Map(), // id -> {key, tr}
  keep: 500,
  functions: [],
  connection: null,
  selected: null,
  detail: null,
  detailError: null,
  reveal: false,
  tab: "detail",
  filters: { fn: "", outcome: "", q: "" },
  loading: null, // summaries received while the list is loading
  feed: null,
  feedOpened: false,
  editOpen: false,
};

// ---------------------------------------------------------------------------------------------------
// small helpers

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "text") el.textContent = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const $ = (sel) => document.querySelector(sel);
const pad = (n, w = 2) => String(n).padStart(w, "0");

function fmtTime(epochS) {
  if (epochS === null || epochS === undefined) return "–";
  const d = new Date(epochS * 1000);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

function fmtDateTime(epochS) {
  if (epochS === null || epochS === undefined) return "–";
  const d = new Date(epochS * 1000);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${fmtTime(epochS)}`;
}

function fmtMs(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return "–";
  const a = Math.abs(ms);
  if (a < 1) return `${ms.toFixed(2)} ms`;
  if (a < 100) return `${ms.toFixed(1)} ms`;
  if (a < 10000) return `${Math.round(ms)} ms`;
  return `${(ms / 1000).toFixed(1)} s`;
}

function fmtBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

function fmtElapsed(epochS, now = Date.now() / 1000) {
  const a = Math.max(0, now - epochS);
  if (a < 60) return `${a.toFixed(a < 10 ? 1 : 0)} s`;
  if (a < 3600) return `${Math.floor(a / 60)}m ${pad(Math.floor(a % 60))}s`;
  return `${Math.floor(a / 3600)}h ${pad(Math.floor((a % 3600) / 60))}m`;
}

function fmtRel(epochS, now = Date.now() / 1000) {
  const d = now - epochS;
  const a = Math.abs(d);
  let s;
  if (a < 1) s = "now";
  else if (a < 60) s = `${Math.round(a)} s`;
  else if (a < 3600) s = `${Math.floor(a / 60)} min ${pad(Math.round(a % 60))} s`;
  else s = `${Math.floor(a / 3600)} h ${pad(Math.floor((a % 3600) / 60))} min`;
  if (s === "now") return s;
  return d >= 0 ? `${s} ago` : `in ${s}`;
}

// an element whose text the ticker keeps up to date ("12 s ago", "in 3 s")
function rel(epochS) {
  if (epochS === null || epochS === undefined) return h("span", { class: "muted", text: "–" });
  return h("span", { class: "rel", dataset: { ts: String(epochS) }, title: fmtDateTime(epochS), text: fmtRel(epochS) });
}

function toast(message, kind = "info") {
  const t = $("#toast");
  t.textContent = message;
  t.className = `toast ${kind}`;
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => (t.hidden = true), 3500);
}

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function api(path, options = {}) {
  const resp = await fetch(path, options);
  if (!resp.ok) {
    let message = `${resp.status} ${resp.statusText}`;
    try {
      const body = await resp.json();
      if (typeof body.detail === "string") message = body.detail;
      else if (body.detail) message = JSON.stringify(body.detail);
    } catch (_) {
      /* not JSON */
    }
    throw new ApiError(resp.status, message);
  }
  return resp.json();
}

function debounce(fn, ms) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch (_) {
    const ta = h("textarea", { style: "position:fixed;opacity:0" });
    ta.value = text;
    document.body.append(ta);
    ta.select();
    const ok = document.execCommand("copy");
    ta.remove();
    return ok;
  }
}

function outcomeBadge(status) {
  return h("span", { class: `badge outcome o-${status}`, text: OUTCOMES[status] || status });
}

function startBadge(cold) {
  if (cold === true) return h("span", { class: "badge cold", text: "cold", title: "a fresh worker (cold start)" });
  if (cold === false) return h("span", { class: "badge warm", text: "warm", title: "a warm worker" });
  return h("span", { class: "muted", text: "–" });
}

function plural(n, word) {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

function shortId(id) {
  return id.length > 13 ? id.slice(0, 8) : id;
}

function shellQuote(text) {
  return `'${text.replace(/'/g, "'\\''")}'`;
}

// ---------------------------------------------------------------------------------------------------
// secrets: the API says which key names look secret; every value under such a key is masked

function embeddedJSON(text) {
  if (typeof text !== "string" || text.length < 2) return null;
  const c = text.trimStart()[0];
  if (c !== "{" && c !== "[") return null;
  try {
    const v = JSON.parse(text);
    return v !== null && typeof v === "object" ? v : null;
  } catch (_) {
    return null;
  }
}

function maskValue(v, keys) {
  if (Array.isArray(v)) return v.map((x) => maskValue(x, keys));
  if (v !== null && typeof v === "object") {
    const out = {};
    for (const [k, x] of Object.entries(v)) out[k] = keys.has(k) ? MASK : maskValue(x, keys);
    return out;
  }
  if (typeof v === "string") {
    const inner = embeddedJSON(v);
    if (inner !== null) {
      const masked = maskValue(inner, keys);
      const text = JSON.stringify(masked);
      return text === JSON.stringify(inner) ? v : text;
    }
  }
  return v;
}

// put back, in an edited copy, the secret values that are still shown as MASK
function unmaskValue(edited, original, keys) {
  if (Array.isArray(edited)) {
    return edited.map((x, i) => unmaskValue(x, Array.isArray(original) ? original[i] : undefined, keys));
  }
  if (edited !== null && typeof edited === "object") {
    const orig = original !== null && typeof original === "object" && !Array.isArray(original) ? original : {};
    const out = {};
    for (const [k, x] of Object.entries(edited)) {
      if (keys.has(k) && x === MASK && Object.prototype.hasOwnProperty.call(orig, k)) out[k] = orig[k];
      else out[k] = unmaskValue(x, orig[k], keys);
    }
    return out;
  }
  if (typeof edited === "string" && typeof original === "string" && edited.includes(MASK)) {
    if (edited === maskValue(original, keys)) return original;
    const e = embeddedJSON(edited);
    const o = embeddedJSON(original);
    if (e !== null && o !== null) return JSON.stringify(unmaskValue(e, o, keys));
  }
  return edited;
}

function secretValue(render) {
  // a masked value with its own reveal toggle; `render` builds the real value's element
  const wrap = h("span", { class: "secret" });
  const shown = h("span", { class: "secret-mask", text: MASK, title: "masked: its name looks secret" });
  let revealed = null;
  const btn = h("button", { type: "button", class: "reveal", text: "reveal" });
  btn.addEventListener("click", (e) => {
    e.stopPropagation();
    if (revealed) {
      revealed.replaceWith(shown);
      revealed = null;
      btn.textContent = "reveal";
    } else {
      revealed = render();
      shown.replaceWith(revealed);
      btn.textContent = "hide";
    }
  });
  wrap.append(shown, " ", btn);
  return wrap;
}

// ---------------------------------------------------------------------------------------------------
// JSON renderer: collapsible, highlighted, lazy (children are built when first opened)

function jsonTree(value, { secretKeys = new Set(), reveal = false, openDepth = 2, truncated = false } = {}) {
  const ctx = { secretKeys, reveal, openDepth, truncated };
  const root = h("div", { class: "json" });
  root.append(jsonNode(value, null, 0, ctx, true));
  return root;
}

function scalar(value, ctx) {
  if (value === null) return h("span", { class: "j-null", text: "null" });
  switch (typeof value) {
    case "string": {
      const m = ctx.truncated ? TRUNCATED.exec(value) : null;
      if (m) {
        const kept = value.slice(0, m.index);
        return h("span", {}, kept ? h("span", { class: "j-str", text: JSON.stringify(kept) }) : null,
          h("span", { class: "j-cut", text: `… ${m[1]} more ${m[2]}` }));
      }
      return h("span", { class: "j-str", text: JSON.stringify(value) });
    }
    case "number":
      return h("span", { class: "j-num", text: String(value) });
    case "boolean":
      return h("span", { class: "j-bool", text: String(value) });
    default:
      return h("span", { text: String(value) });
  }
}

function jsonNode(value, key, depth, ctx, last) {
  const line = h("div", { class: "j-line" });
  const keyEl =
    key === null
      ? null
      : typeof key === "number"
        ? null
        : h("span", { class: "j-key", text: JSON.stringify(key) });
  const comma = last ? null : h("span", { class: "j-punct", text: "," });
  const prefix = keyEl ? [keyEl, h("span", { class: "j-punct", text: ": " })] : [];

  if (key !== null && typeof key === "string" && ctx.secretKeys.has(key) && !ctx.reveal) {
    line.append(...prefix, secretValue(() => valueInline(value, depth, ctx)), comma || "");
    return line;
  }
  if (value !== null && typeof value === "object") {
    line.classList.add("j-container");
    line.append(...prefix, container(value, depth, ctx, comma));
    return line;
  }
  if (typeof value === "string") {
    const inner = embeddedJSON(value);
    if (inner !== null) {
      line.classList.add("j-container");
      line.append(...prefix, h("span", { class: "j-tag", text: "JSON string", title: "this string holds a JSON document; shown parsed" }),
        container(inner, depth, ctx, comma));
      return line;
    }
  }
  line.append(...prefix, scalar(value, ctx), comma || "");
  return line;
}

function valueInline(value, depth, ctx) {
  // a revealed secret: shown as the real value (a whole subtree if it is one), not masked inside
  const sub = { ...ctx, reveal: true };
  if (value !== null && typeof value === "object") return h("span", { class: "revealed" }, container(value, depth, sub, null));
  return h("span", { class: "revealed" }, scalar(value, sub));
}

function container(value, depth, ctx, comma) {
  const isArray = Array.isArray(value);
  const entries = isArray ? value.map((v, i) => [i, v]) : Object.entries(value);
  const [open, close] = isArray ? ["[", "]"] : ["{", "}"];
  const frag = h("span", { class: "j-box" });
  if (entries.length === 0) {
    frag.append(h("span", { class: "j-punct", text: open + close }), comma || "");
    return frag;
  }
  const toggle = h("button", { type: "button", class: "j-toggle", "aria-label": "expand or collapse" });
  const summary = h("span", {
    class: "j-summary",
    text: `${entries.length} ${isArray ? (entries.length === 1 ? "item" : "items") : entries.length === 1 ? "key" : "keys"}`,
  });
  const children = h("div", { class: "j-children" });
  const closeEl = h("span", { class: "j-close" }, h("span", { class: "j-punct", text: close }), comma || "");
  let built = false;
  const setOpen = (o) => {
    if (o && !built) {
      entries.forEach(([k, v], i) => children.append(jsonNode(v, k, depth + 1, ctx, i === entries.length - 1)));
      built = true;
    }
    frag.classList.toggle("open", o);
  };
  toggle.addEventListener("click", (e) => {
    e.stopPropagation();
    setOpen(!frag.classList.contains("open"));
  });
  summary.addEventListener("click", () => setOpen(true));
  frag._setOpen = setOpen;
  frag.append(toggle, h("span", { class: "j-punct", text: open }), summary, children, closeEl);
  setOpen(depth < ctx.openDepth);
  return frag;
}

function setTreeOpen(root, open) {
  // expand: open every level (building lazily); collapse: close all but the root
  const walk = (el, depth) => {
    for (const box of el.querySelectorAll(":scope .j-box")) {
      if (box._setOpen) box._setOpen(open || box === root.querySelector(".j-box"));
    }
  };
  if (open) {
    let before = -1;
    // opening builds new boxes; repeat until nothing new appears (bounded by the payload size)
    for (let i = 0; i < 64; i++) {
      const boxes = root.querySelectorAll(".j-box");
      if (boxes.length === before) break;
      before = boxes.length;
      boxes.forEach((b) => b._setOpen && b._setOpen(true));
    }
  } else {
    walk(root, 0);
  }
}

// ---------------------------------------------------------------------------------------------------
// the feed

function matchesFilters(s) {
  const f = S.filters;
  if (f.fn && s.function !== f.fn) return false;
  if (f.outcome) {
    if (f.outcome === "errors") return FAILED.has(s.status);
    return s.status === f.outcome;
  }
  return true;
}

function listQuery() {
  const p = new URLSearchParams({ limit: String(S.keep) });
  if (S.filters.fn) p.set("function", S.filters.fn);
  if (S.filters.outcome) p.set("status", S.filters.outcome);
  if (S.filters.q) p.set("q", S.filters.q);
  return `api/invocations?${p}`;
}

async function loadList() {
  S.loading = [];
  let items;
  try {
    items = await api(listQuery());
  } catch (e) {
    S.loading = null;
    toast(`Could not load invocations: ${e.message}`, "error");
    return;
  }
  const pending = S.loading || [];
  S.loading = null;
  S.rows = new Map(items.map((s) => [s.id, s]));
  S.order = items.map((s) => s.id);
  for (const s of pending) upsert(s, false);
  renderFeed();
  updateFunctionFilter();
}

const reloadSoon = debounce(loadList, 300);

function upsert(s, render = true) {
  if (S.filters.q) {
    // a text search needs the payloads: ask the server again (debounced)
    if (S.rows.has(s.id)) S.rows.set(s.id, s);
    reloadSoon();
  } else if (matchesFilters(s)) {
    if (!S.rows.has(s.id)) S.order.unshift(s.id);
    S.rows.set(s.id, s);
    if (S.order.length > S.keep) {
      for (const id of S.order.splice(S.keep)) S.rows.delete(id);
    }
  } else if (S.rows.has(s.id)) {
    S.rows.delete(s.id);
    S.order = S.order.filter((id) => id !== s.id);
  }
  if (render) scheduleRender();
}

let renderQueued = false;
function scheduleRender() {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(() => {
    renderQueued = false;
    renderFeed();
  });
}

function rowFor(s) {
  const key = JSON.stringify(s) + (s.id === S.selected ? "*" : "");
  const cached = S.rowCache.get(s.id);
  if (cached && cached.key === key) return cached.tr;
  const dur =
    s.status === "running"
      ? h("span", { class: "running-for", dataset: { since: String(s.started_at) }, text: fmtElapsed(s.started_at) })
      : fmtMs(s.duration_ms);
  const tr = h(
    "tr",
    {
      class: `row s-${s.status}${s.id === S.selected ? " selected" : ""}${s.source === "replay" ? " replay" : ""}`,
      dataset: { id: s.id, status: s.status, function: s.function },
      tabindex: "0",
      onclick: () => select(s.id),
      onkeydown: (e) => {
        if (e.key === "Enter") select(s.id);
      },
    },
    h("td", { class: "c-time mono", title: fmtDateTime(s.started_at), text: fmtTime(s.started_at) }),
    h("td", { class: "c-fn", text: s.function, title: s.function }),
    h(
      "td",
      { class: "c-id mono", title: s.id },
      shortId(s.id),
      s.source === "replay"
        ? h("span", { class: "badge replay-mark", text: "↻", title: s.replay_of ? `replay of ${s.replay_of}` : "replay" })
        : null,
    ),
    h("td", { class: "c-trigger", text: s.trigger, title: s.trigger }),
    h("td", { class: "c-dur mono" }, dur),
    h("td", { class: "c-outcome" }, outcomeBadge(s.status)),
    h("td", { class: "c-start" }, startBadge(s.cold)),
    h("td", { class: "c-gen mono", text: s.generation === null || s.generation === undefined ? "–" : `g${s.generation}` }),
  );
  S.rowCache.set(s.id, { key, tr });
  return tr;
}

function renderFeed() {
  const body = $("#feed-body");
  const rows = S.order.map((id) => S.rows.get(id)).filter(Boolean);
  body.replaceChildren(...rows.map(rowFor));
  for (const id of S.rowCache.keys()) if (!S.rows.has(id)) S.rowCache.delete(id);
  const filtered = S.filters.fn || S.filters.outcome || S.filters.q;
  $("#feed-empty").hidden = rows.length > 0;
  $("#feed-empty .big").textContent = filtered ? "No invocation matches the filters." : "No invocations yet.";
  $("#feed-count").textContent = rows.length
    ? `${rows.length} invocation${rows.length === 1 ? "" : "s"}${filtered ? " match" + (rows.length === 1 ? "es" : "") : ""} · the dev server keeps the last ${S.keep}`
    : "";
}

function updateFunctionFilter() {
  const sel = $("#filter-function");
  const names = new Set(S.functions.map((f) => f.name));
  for (const s of S.rows.values()) names.add(s.function);
  if (S.filters.fn) names.add(S.filters.fn);
  const have = [...sel.options].slice(1).map((o) => o.value);
  const want = [...names].sort();
  if (JSON.stringify(have) === JSON.stringify(want)) return;
  sel.replaceChildren(h("option", { value: "", text: "All functions" }), ...want.map((n) => h("option", { value: n, text: n })));
  sel.value = S.filters.fn;
}

// ---------------------------------------------------------------------------------------------------
// routing: #/invocations/<id>, #/functions, #/connection

function select(id) {
  location.hash = `#/invocations/${encodeURIComponent(id)}`;
}

function route() {
  const hash = location.hash.replace(/^#\/?/, "");
  const [kind, ...rest] = hash.split("/");
  if (kind === "invocations" && rest.length) {
    const id = decodeURIComponent(rest.join("/"));
    showTab("detail");
    if (id !== S.selected || !S.detail) {
      S.selected = id;
      S.editOpen = false;
      loadDetail(true);
      scheduleRender();
    }
  } else if (kind === "functions") {
    showTab("functions");
  } else if (kind === "connection") {
    showTab("connection");
  } else {
    showTab("detail");
    if (kind === "" && S.selected) {
      S.selected = null;
      S.detail = null;
      renderDetail();
      scheduleRender();
    }
  }
}

function showTab(tab) {
  S.tab = tab;
  for (const el of document.querySelectorAll(".panel")) el.hidden = el.dataset.panel !== tab;
  for (const a of document.querySelectorAll(".tabs a[data-tab]")) a.classList.toggle("active", a.dataset.tab === tab);
  $("#tab-detail").href = S.selected ? `#/invocations/${encodeURIComponent(S.selected)}` : "#/";
  if (tab === "functions") renderFunctions();
  if (tab === "connection") renderConnection();
}

// ---------------------------------------------------------------------------------------------------
// detail

async function loadDetail(fresh = false) {
  const id = S.selected;
  if (!id) return;
  try {
    const d = await api(`api/invocations/${encodeURIComponent(id)}`);
    if (S.selected !== id) return;
    S.detail = d;
    S.detailError = null;
  } catch (e) {
    if (S.selected !== id) return;
    S.detail = null;
    S.detailError = e;
  }
  renderDetail(fresh);
}

const refreshDetail = (() => {
  let timer = null;
  return () => {
    if (timer) return;
    timer = setTimeout(() => {
      timer = null;
      loadDetail(false);
    }, 250);
  };
})();

function section(title, { open = true, extra = null, cls = "" } = {}, ...body) {
  return h("details", { class: `section ${cls}`, open },
    h("summary", {}, h("span", { class: "s-title", text: title }), extra),
    h("div", { class: "s-body" }, ...body));
}

function renderDetail(fresh = false) {
  const box = $("#detail");
  const placeholder = $("#detail-placeholder");
  $("#tab-detail").href = S.selected ? `#/invocations/${encodeURIComponent(S.selected)}` : "#/";
  if (!S.selected) {
    box.hidden = true;
    placeholder.hidden = false;
    return;
  }
  placeholder.hidden = true;
  box.hidden = false;
  const panel = $("#panel-detail");
  const scroll = fresh ? 0 : panel.scrollTop;
  if (!S.detail) {
    const e = S.detailError;
    box.replaceChildren(
      h("div", { class: "notice error-notice" },
        h("p", { class: "big", text: e && e.status === 404 ? "Not in memory" : "Could not load this invocation" }),
        h("p", { text: e ? e.message : "loading…" }),
        h("p", {}, h("a", { href: "#/", text: "Back" }))),
    );
    return;
  }
  const d = S.detail;
  const keys = new Set(d.secret_keys || []);
  const editor = S.editOpen ? box.querySelector(".editor") : null;
  box.replaceChildren(detailHead(d), editor || h("div", { class: "editor-slot" }), ...detailSections(d, keys));
  panel.scrollTop = scroll;
}

function detailHead(d) {
  const replayOf = d.replay_of
    ? h("span", { class: "meta-item" }, "replay of ", h("a", { class: "mono", href: `#/invocations/${encodeURIComponent(d.replay_of)}`, text: shortId(d.replay_of) }))
    : null;
  const started = d.started_at;
  // What the handler gets here (live: the function's timeout less the way back), else the deadline's.
  const budget = d.timeout_s !== null && d.timeout_s !== undefined
    ? d.timeout_s * 1000
    : d.deadline_ms ? d.deadline_ms - started * 1000 : null;
  const meta = h("div", { class: "meta" },
    h("span", { class: "meta-item", title: fmtDateTime(started) }, "started ", h("b", { text: fmtTime(started) })),
    h("span", { class: "meta-item" }, "duration ", h("b", { text: d.status === "running" ? "running…" : fmtMs(d.duration_ms) })),
    budget !== null && budget > 0
      ? h("span", { class: "meta-item", id: "detail-timeout" }, "timeout ", h("b", { text: `${(budget / 1000).toFixed(2)} s` }),
        d.timeout_note ? ` (${d.timeout_note})` : null)
      : null,
    d.worker_id ? h("span", { class: "meta-item" }, "worker ", h("b", { class: "mono", text: d.worker_id })) : null,
    d.sandbox_id ? h("span", { class: "meta-item" }, "sandbox ", h("b", { class: "mono", text: d.sandbox_id })) : null,
    replayOf,
  );
  const replayBtn = h("button", { type: "button", class: "btn primary", id: "replay-btn", text: "Replay", title: "run it again locally with the same event" });
  replayBtn.addEventListener("click", () => doReplay(d, undefined, replayBtn));
  const editBtn = h("button", { type: "button", class: "btn", id: "edit-replay-btn", text: "Edit & replay" });
  editBtn.addEventListener("click", () => openEditor(d));
  const copyBtn = h("button", {
    type: "button",
    class: "btn",
    id: "copy-invoke-btn",
    title: "copy a `livelambda invoke` command with this event (its secrets included, as they are)",
    text: "Copy as livelambda invoke",
  });
  copyBtn.addEventListener("click", () => copyInvoke(d));
  const revealBox = h("input", { type: "checkbox", id: "reveal-all", checked: S.reveal || null });
  revealBox.addEventListener("change", () => {
    S.reveal = revealBox.checked;
    renderDetail();
  });
  const anySecret = (d.secret_keys || []).length > 0;
  return h("div", { class: "detail-head" },
    h("div", { class: "title-row" },
      h("h2", { text: d.function }),
      outcomeBadge(d.status),
      startBadge(d.cold),
      d.generation !== null && d.generation !== undefined ? h("span", { class: "badge gen", text: `gen ${d.generation}`, title: "code generation" }) : null,
      h("span", { class: "badge trigger", text: d.trigger }),
      d.source === "replay" ? h("span", { class: "badge replay-mark", text: "↻ replay" }) : null,
    ),
    h("div", { class: "req-id mono", id: "detail-id", title: "request id" }, d.id),
    meta,
    h("div", { class: "actions" },
      replayBtn, editBtn, copyBtn,
      anySecret
        ? h("label", { class: "reveal-all", title: `masked: ${d.secret_keys.join(", ")}` }, revealBox, " reveal secrets")
        : null,
    ),
    h("div", { class: "inline-error", id: "action-error", hidden: true }),
  );
}

function errorBlock(d) {
  if (!d.error_type && !d.error_message && !(d.stack_trace || []).length) return null;
  const trace = d.stack_trace || [];
  const lines = trace.map((l) => (l.endsWith("\n") ? l : l + "\n")).join("");
  const text =
    (trace.length ? "Traceback (most recent call last):\n" + lines : "") +
    `${d.error_type || "Error"}: ${d.error_message || ""}`;
  return section("Error", { cls: "error-section" },
    h("div", { class: "error-title" }, h("b", { text: d.error_type || "Error" }), ": ", d.error_message || ""),
    h("pre", { class: "traceback", id: "traceback", text: text }),
  );
}

const MILESTONES = [
  ["sent", "received", "AppSync hop in", "hop-in"],
  ["received", "started", "dispatch to a worker", "dispatch"],
  ["started", "finished", "local run", "run"],
  ["finished", "published", "hop out (result published)", "hop-out"],
];

function timingBlock(d) {
  const t = d.timings || {};
  const present = Object.keys(t);
  if (!present.length && (d.duration_ms === null || d.duration_ms === undefined)) return null;
  const segs = MILESTONES.filter(([a, b]) => typeof t[a] === "number" && typeof t[b] === "number").map(([a, b, label, cls]) => ({
    label,
    cls,
    ms: t[b] - t[a],
  }));
  const total = segs.reduce((acc, s) => acc + Math.max(0, s.ms), 0);
  const bar = total > 0
    ? h("div", { class: "tbar" }, ...segs.map((s) => h("span", {
      class: `tseg t-${s.cls}`,
      style: `flex-grow:${Math.max(0.01, s.ms) / total}`,
      title: `${s.label}: ${fmtMs(s.ms)}`,
    })))
    : null;
  const rows = segs.map((s) => h("tr", {},
    h("td", {}, h("span", { class: `swatch t-${s.cls}` }), s.label),
    h("td", { class: "mono num", text: fmtMs(s.ms) + (s.ms < 0 ? " (clock skew)" : "") }),
  ));
  const first = Math.min(...present.map((k) => t[k]));
  if (segs.length > 1 && typeof t.sent === "number" && typeof t.published === "number") {
    rows.push(h("tr", { class: "total" }, h("td", { text: "round trip (sent → published)" }), h("td", { class: "mono num", text: fmtMs(t.published - t.sent) })));
  }
  if (d.duration_ms !== null && d.duration_ms !== undefined) {
    rows.push(h("tr", {}, h("td", { text: "handler duration (as Lambda reports it)" }), h("td", { class: "mono num", text: fmtMs(d.duration_ms) })));
  }
  const order = ["sent", "received", "started", "finished", "published"];
  const marks = present.sort((a, b) => {
    const ia = order.indexOf(a);
    const ib = order.indexOf(b);
    return (ia < 0 ? 99 : ia) - (ib < 0 ? 99 : ib);
  }).map((k) => h("span", { class: "mark" }, h("span", { class: "muted", text: k }), " ", h("span", { class: "mono", text: `+${fmtMs(t[k] - first)}` })));
  return section("Timing", { cls: "timing-section" }, bar, h("table", { class: "kv timing" }, h("tbody", {}, ...rows)), marks.length ? h("div", { class: "marks" }, ...marks) : null);
}

function payloadSection(d, part, keys) {
  const value = d[part];
  const size = d[`${part}_size`];
  const cut = d[`${part}_truncated`];
  const href = `api/invocations/${encodeURIComponent(d.id)}/${part}`;
  const tree = h("div", { class: "tree-holder" });
  const expand = h("button", { type: "button", class: "link-btn", text: "expand all" });
  const collapse = h("button", { type: "button", class: "link-btn", text: "collapse" });
  const extra = h("span", { class: "s-extra" },
    h("span", { class: "muted", text: fmtBytes(size || 0) }),
    expand, collapse,
    h("a", { href, download: `${d.id}-${part}.json`, class: "link-btn", text: "download" }),
  );
  for (const b of [expand, collapse]) b.addEventListener("click", (e) => e.preventDefault());
  expand.addEventListener("click", () => setTreeOpen(tree, true));
  collapse.addEventListener("click", () => setTreeOpen(tree, false));
  let content;
  if (part === "response" && value === null && d.status !== "ok") {
    content = h("p", { class: "muted", text: d.status === "running" ? "No response yet: still running." : "No response: the invocation failed (see the error)." });
  } else {
    content = jsonTree(value, { secretKeys: keys, reveal: S.reveal, openDepth: size <= 4096 ? 64 : size <= 16384 ? 3 : 2, truncated: cut });
  }
  tree.append(content);
  const banner = cut
    ? h("div", { class: "banner", id: `${part}-truncated` },
      `Large ${part}: ${fmtBytes(size)} of JSON, shown cut down. `,
      h("a", { href, download: `${d.id}-${part}.json`, text: `Download the whole ${part}` }))
    : null;
  return section(part === "event" ? "Event" : "Response", { extra, cls: `payload ${part}-section` }, banner, tree);
}

function logsSection(d) {
  const logs = d.logs || "";
  const pre = logs
    ? h("pre", { class: "logs", id: "logs" }, ...logs.replace(/\n$/, "").split("\n").map((line) => h("div", {
      class: /\b(ERROR|Traceback|Exception|CRITICAL)\b/.test(line) ? "log-line log-err" : /\bWARN(ING)?\b/.test(line) ? "log-line log-warn" : "log-line",
      text: line || " ",
    })))
    : h("p", { class: "muted", id: "logs", text: d.status === "running" ? "No output yet." : "No output." });
  return section("Logs", { cls: "logs-section", extra: h("span", { class: "s-extra muted", text: logs ? plural(logs.split("\n").filter(Boolean).length, "line") : "" }) }, pre);
}

function detailSections(d, keys) {
  return [errorBlock(d), payloadSection(d, "event", keys), payloadSection(d, "response", keys), logsSection(d), timingBlock(d)].filter(Boolean);
}

async function wholeEvent(d) {
  if (!d.event_truncated) return d.event;
  const resp = await fetch(`api/invocations/${encodeURIComponent(d.id)}/event`);
  if (!resp.ok) throw new ApiError(resp.status, "could not download the whole event");
  return resp.json();
}

async function copyInvoke(d) {
  try {
    const event = await wholeEvent(d);
    const cmd = `livelambda invoke ${d.function} ${shellQuote(JSON.stringify(event))}`;
    if (await copyText(cmd)) toast("Copied: livelambda invoke …");
    else toast("Could not copy to the clipboard", "error");
  } catch (e) {
    toast(e.message, "error");
  }
}

async function openEditor(d) {
  let event;
  try {
    event = await wholeEvent(d);
  } catch (e) {
    showActionError(e.message);
    return;
  }
  const keys = new Set(d.secret_keys || []);
  const shown = S.reveal ? event : maskValue(event, keys);
  const ta = h("textarea", { class: "mono", id: "edit-event", spellcheck: "false", rows: "14", "aria-label": "event JSON" });
  ta.value = JSON.stringify(shown, null, 2);
  const err = h("div", { class: "inline-error", id: "edit-error", role: "alert", hidden: true });
  const run = h("button", { type: "button", class: "btn primary", id: "edit-run", text: "Run replay" });
  const cancel = h("button", { type: "button", class: "btn", text: "Cancel" });
  const note = S.reveal || keys.size === 0
    ? null
    : h("span", { class: "muted small", text: `${MASK} stands for the recorded secret value; leave it to keep it.` });
  const editor = h("div", { class: "editor" },
    h("div", { class: "editor-title", text: "Edit the event, then run it again locally" }),
    ta, err, h("div", { class: "editor-actions" }, run, cancel, note));
  ta.addEventListener("input", () => {
    err.hidden = true;
    ta.removeAttribute("aria-invalid");
  });
  cancel.addEventListener("click", () => {
    S.editOpen = false;
    editor.replaceWith(h("div", { class: "editor-slot" }));
  });
  run.addEventListener("click", () => {
    let edited;
    try {
      edited = JSON.parse(ta.value);
    } catch (e) {
      err.textContent = `Invalid JSON: ${jsonErrorText(e, ta.value)}`;
      err.hidden = false;
      ta.setAttribute("aria-invalid", "true");
      return;
    }
    doReplay(d, S.reveal ? edited : unmaskValue(edited, event, keys), run, err);
  });
  const slot = $("#detail .editor-slot, #detail .editor");
  if (slot) slot.replaceWith(editor);
  S.editOpen = true;
  ta.setSelectionRange(0, 0);
  ta.focus();
  ta.scrollTop = 0;
}

function jsonErrorText(e, text) {
  const m = /position (\d+)/.exec(e.message);
  if (m && !/line \d+/.test(e.message)) {
    const pos = Number(m[1]);
    const before = text.slice(0, pos);
    const line = before.split("\n").length;
    const col = pos - before.lastIndexOf("\n");
    return `${e.message} (line ${line}, column ${col})`;
  }
  return e.message;
}

function showActionError(message, el) {
  const box = el || $("#action-error");
  if (!box) return;
  box.textContent = message;
  box.hidden = false;
}

async function doReplay(d, event, button, errBox) {
  const label = button.textContent;
  button.disabled = true;
  button.textContent = "Replaying…";
  try {
    const options = { method: "POST", headers: { "Content-Type": "application/json" } };
    if (event !== undefined) options.body = JSON.stringify({ event });
    const rec = await api(`api/invocations/${encodeURIComponent(d.id)}/replay`, options);
    S.editOpen = false;
    upsert(rec);
    toast(`Replayed as ${shortId(rec.id)}: ${OUTCOMES[rec.status] || rec.status}`);
    select(rec.id);
  } catch (e) {
    showActionError(`Replay failed: ${e.message}`, errBox);
  } finally {
    button.disabled = false;
    button.textContent = label;
  }
}

// ---------------------------------------------------------------------------------------------------
// functions and connection panels

function kvRow(label, value) {
  return h("tr", {}, h("th", { text: label }), h("td", {}, value === null || value === undefined || value === "" ? h("span", { class: "muted", text: "–" }) : value));
}

function renderFunctions() {
  const panel = $("#panel-functions");
  $("#fn-count").textContent = S.functions.length ? String(S.functions.length) : "";
  if (S.tab !== "functions") return;
  if (!S.functions.length) {
    panel.replaceChildren(h("div", { class: "placeholder" }, h("p", { class: "big", text: "No functions" }), h("p", { text: "The dev server runs no function yet." })));
    return;
  }
  const scroll = panel.scrollTop;
  panel.replaceChildren(...S.functions.map(functionCard));
  panel.scrollTop = scroll;
}

function functionCard(f) {
  const secret = new Set(f.secret_keys || []);
  const workers = f.workers || [];
  const env = Object.entries(f.environment || {});
  return h("div", { class: "card fn-card", dataset: { function: f.name } },
    h("div", { class: "title-row" },
      h("h2", { text: f.name }),
      f.generation !== null && f.generation !== undefined ? h("span", { class: "badge gen", text: `gen ${f.generation}` }) : null,
      f.last_reload_error ? h("span", { class: "badge outcome o-handler_error", text: "reload failed" }) : null),
    h("table", { class: "kv" }, h("tbody", {},
      kvRow("handler", f.handler ? h("span", { class: "mono", text: f.handler }) : null),
      kvRow("source", f.source ? h("span", { class: "mono", text: f.source }) : null),
      kvRow("python", f.python),
      kvRow("timeout", f.timeout !== null && f.timeout !== undefined ? `${f.timeout} s` : null),
      f.memory_mb ? kvRow("memory", `${f.memory_mb} MB`) : null,
      kvRow("last reload", f.last_reload_at ? h("span", {}, fmtTime(f.last_reload_at), " · ", rel(f.last_reload_at)) : h("span", { class: "muted", text: "not reloaded yet" })),
    )),
    f.last_reload_error
      ? h("div", { class: "reload-error" }, h("div", { class: "error-title", text: "Last reload failed: every invocation gets this error until a save fixes it" }), h("pre", { class: "traceback", text: f.last_reload_error }))
      : null,
    // `error` (why it cannot run) is often the reload error's first line: show it once
    f.error && !(f.last_reload_error || "").includes(f.error)
      ? h("div", { class: "reload-error" }, h("pre", { class: "traceback", text: f.error }))
      : null,
    h("h3", { text: `Workers (${workers.length})` }),
    workers.length
      ? h("table", { class: "grid" },
        h("thead", {}, h("tr", {}, ...["id", "pid", "state", "gen", "cold start"].map((c) => h("th", { text: c })))),
        h("tbody", {}, ...workers.map((w) => h("tr", {},
          h("td", { class: "mono", text: w.id }),
          h("td", { class: "mono", text: w.pid ?? "–" }),
          h("td", {}, h("span", { class: `badge w-${w.state}`, text: w.state })),
          h("td", { class: "mono", text: w.generation === null || w.generation === undefined ? "–" : `g${w.generation}` }),
          h("td", { class: "mono", text: fmtMs(w.cold_start_ms) }),
        ))))
      : h("p", { class: "muted", text: "No live worker: the next invocation starts one (cold start)." }),
    h("h3", { text: `Environment (${env.length})` }),
    env.length
      ? h("table", { class: "kv env" }, h("tbody", {}, ...env.map(([k, v]) => h("tr", {},
        h("th", { class: "mono", text: k }),
        h("td", { class: "mono" }, secret.has(k) ? secretValue(() => h("span", { class: "revealed", text: v })) : v)))))
      : h("p", { class: "muted", text: "No environment variables." }),
  );
}

function renderConnPill() {
  const pill = $("#conn-pill");
  const c = S.connection;
  const state = c ? c.state : "unknown";
  pill.className = `pill conn-${state}`;
  let label = c ? `AppSync ${state}` : "AppSync …";
  if (c && state === "backoff" && c.next_retry_at) label += ` · retry ${fmtRel(c.next_retry_at)}`;
  else if (c && c.attempts && state !== "connected") label += ` · attempt ${c.attempts}`;
  pill.querySelector(".label").textContent = label;
  pill.title = c && c.endpoint ? `AppSync Events: ${c.endpoint}` : "AppSync Events connection";
}

function renderConnection() {
  renderConnPill();
  const panel = $("#panel-connection");
  if (S.tab !== "connection") return;
  const c = S.connection;
  if (!c) {
    panel.replaceChildren(h("div", { class: "placeholder" }, h("p", { class: "big", text: "Loading…" })));
    return;
  }
  const rejected = Object.entries(c.rejected || {}).sort((a, b) => b[1] - a[1]);
  const totalRejected = rejected.reduce((acc, [, n]) => acc + n, 0);
  const recent = [...(c.recent_rejections || [])].reverse();
  panel.replaceChildren(h("div", { class: "card conn-card" },
    h("div", { class: "title-row" },
      h("h2", { text: "AppSync Events connection" }),
      h("span", { class: `badge conn-state cs-${c.state}`, id: "conn-state", text: c.state })),
    h("table", { class: "kv" }, h("tbody", {},
      kvRow("since", c.since ? h("span", {}, fmtTime(c.since), " · ", rel(c.since)) : null),
      kvRow("endpoint", c.endpoint ? h("span", { class: "mono", text: c.endpoint }) : null),
      kvRow("session", c.session ? h("span", { class: "mono", text: c.session }) : null),
      kvRow("connection attempts", h("span", { class: "mono", id: "conn-attempts", text: String(c.attempts ?? 0) })),
      kvRow("failed attempts", h("span", { class: "mono", text: String(c.failures ?? 0) })),
      c.losses !== undefined && c.losses !== null
        ? kvRow("connections lost", h("span", { class: "mono", id: "conn-losses", text: String(c.losses) }))
        : null,
      c.last_error && c.state !== "connected" ? kvRow("last error", h("span", { class: "mono", id: "conn-error", text: c.last_error })) : null,
      kvRow("current backoff", c.backoff_s ? h("span", { class: "mono", text: `${Number(c.backoff_s).toFixed(1)} s` }) : null),
      kvRow("next retry", c.next_retry_at ? h("span", {}, fmtTime(c.next_retry_at), " · ", rel(c.next_retry_at)) : null),
      kvRow("last keep-alive", c.last_frame_at ? h("span", {}, fmtTime(c.last_frame_at), " · ", rel(c.last_frame_at)) : h("span", { class: "muted", text: "none yet" })),
    )),
    h("h3", { text: `Rejected messages (${totalRejected})` }),
    rejected.length
      ? h("table", { class: "grid rejected" }, h("thead", {}, h("tr", {}, h("th", { text: "reason" }), h("th", { class: "num", text: "count" }))),
        h("tbody", {}, ...rejected.map(([reason, n]) => h("tr", {}, h("td", { class: "mono", text: reason }), h("td", { class: "mono num", text: String(n) })))))
      : h("p", { class: "muted", text: "None: every message arrived signed, fresh and once." }),
    recent.length ? h("h3", { text: "Most recent" }) : null,
    recent.length
      ? h("table", { class: "grid recent" }, h("thead", {}, h("tr", {}, h("th", { text: "at" }), h("th", { text: "reason" }), h("th", { text: "detail" }))),
        h("tbody", {}, ...recent.map((r) => h("tr", {},
          h("td", { class: "mono", text: fmtTime(r.at) }),
          h("td", { class: "mono", text: r.reason }),
          h("td", { text: r.detail || "" })))))
      : null,
  ));
}

// ---------------------------------------------------------------------------------------------------
// the live feed (SSE)

function setFeedState(state) {
  const pill = $("#feed-pill");
  pill.className = `pill feed-pill feed-${state}`;
  pill.querySelector(".label").textContent = state === "live" ? "live" : state === "down" ? "dev server unreachable" : "reconnecting…";
}

function connectFeed() {
  const es = new EventSource("api/feed");
  S.feed = es;
  es.addEventListener("hello", (e) => {
    const hello = JSON.parse(e.data);
    S.keep = hello.keep || S.keep;
    setFeedState("live");
    loadList(); // (re)load: whatever happened while we were not listening
    if (S.feedOpened && S.selected) loadDetail(false);
    S.feedOpened = true;
  });
  es.addEventListener("invocation", (e) => {
    const s = JSON.parse(e.data);
    if (S.loading) S.loading.push(s);
    else upsert(s);
    if (s.id === S.selected) refreshDetail();
  });
  es.addEventListener("cleared", () => {
    S.rows.clear();
    S.order = [];
    scheduleRender();
    if (S.selected) loadDetail(false);
  });
  es.addEventListener("connection", (e) => {
    S.connection = JSON.parse(e.data);
    renderConnection();
  });
  es.addEventListener("functions", (e) => {
    S.functions = JSON.parse(e.data);
    renderFunctions();
    updateFunctionFilter();
  });
  es.onerror = () => {
    if (es.readyState === EventSource.CLOSED) {
      setFeedState("down");
      setTimeout(connectFeed, 2000);
    } else {
      setFeedState("reconnecting");
    }
  };
}

// ---------------------------------------------------------------------------------------------------
// start

function tick() {
  const now = Date.now() / 1000;
  for (const el of document.querySelectorAll(".rel[data-ts]")) el.textContent = fmtRel(Number(el.dataset.ts), now);
  for (const el of document.querySelectorAll(".running-for[data-since]")) el.textContent = fmtElapsed(Number(el.dataset.since), now);
  if (S.connection && S.connection.state === "backoff") renderConnPill();
}

function wireFilters() {
  const fn = $("#filter-function");
  const outcome = $("#filter-outcome");
  const q = $("#filter-q");
  fn.addEventListener("change", () => {
    S.filters.fn = fn.value;
    loadList();
  });
  outcome.addEventListener("change", () => {
    S.filters.outcome = outcome.value;
    loadList();
  });
  const search = debounce(() => {
    S.filters.q = q.value.trim();
    loadList();
  }, 250);
  q.addEventListener("input", search);
  const clear = $("#clear-btn");
  let armed = null;
  clear.addEventListener("click", async () => {
    if (!armed) {
      clear.textContent = "Click again to clear";
      clear.classList.add("armed");
      armed = setTimeout(() => {
        armed = null;
        clear.textContent = "Clear";
        clear.classList.remove("armed");
      }, 4000);
      return;
    }
    clearTimeout(armed);
    armed = null;
    clear.textContent = "Clear";
    clear.classList.remove("armed");
    try {
      const r = await api("api/invocations", { method: "DELETE" });
      toast(`Cleared ${r.cleared} invocation${r.cleared === 1 ? "" : "s"}`);
    } catch (e) {
      toast(`Clear failed: ${e.message}`, "error");
    }
  });
}

async function start() {
  wireFilters();
  window.addEventListener("hashchange", route);
  route();
  renderFeed();
  try {
    S.connection = await api("api/connection");
    renderConnection();
  } catch (_) {
    /* the feed brings it */
  }
  connectFeed();
  setInterval(tick, 1000);
}

document.addEventListener("DOMContentLoaded", start);

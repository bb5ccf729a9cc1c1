// The kvc playground: a client of the server's own API. Chat streams over
// POST /v1/chat/completions with the kv_compression set here; while an answer
// streams (and once after) the cache map reads GET /v1/kv_cache/{id}, the id the
// stream's chunks carry; the server view polls /metrics. Plain modules, no framework.
const $ = (id) => document.getElementById(id);
const PRESETS = {
  none: { method: "none" },
  "kvcompress 4x": { method: "kvcompress", rate: 4 },
  "kvcompress 16x": { method: "kvcompress", rate: 16 },
  "snapkv 8x": { method: "snapkv", rate: 8 },
  streaming: { method: "streaming", max_cache_tokens: 64 },
};
/** fields that only some methods read: greyed out for the others */
const USED_BY = {
  allocation: (m, f) => m === "kvcompress" || (m === "kvcrush" && f.crush_base === "kvcompress"),
  crush_ratio: (m) => m === "kvcrush",
  crush_anchor: (m) => m === "kvcrush",
  crush_base: (m) => m === "kvcrush",
};
const MAP_POLL_MS = 250;
const SERVER_POLL_MS = 1000;
const HISTORY = 120;

let settings = [];
const messages = [];
let abort = null;
let selected = 0;
let lastMap = null;

// --- API
function headers(json) {
  const h = json ? { "Content-Type": "application/json" } : {};
  const key = $("api-key").value.trim();
  if (key) h.Authorization = `Bearer ${key}`;
  return h;
}
async function apiError(res) {
  try {
    return (await res.json()).error?.message ?? res.statusText;
  } catch {
    return res.statusText;
  }
}

// --- compression controls, built from the server's settings table
function buildControls(s) {
  settings = s.settings;
  const fields = $("fields");
  for (const st of settings) {
    const label = document.createElement("label");
    label.title = st.help;
    label.dataset.field = st.field;
    label.append(st.field.replaceAll("_", " "));
    let input;
    if (st.kind === "enum") {
      input = document.createElement("select");
      for (const v of st.values) input.append(new Option(v, v));
    } else {
      input = document.createElement("input");
      if (st.kind === "bool") input.type = "checkbox";
      else {
        input.type = "number";
        input.min = String(st.min);
        if (st.kind === "number") input.step = "any";
        if (st.below !== undefined) input.max = String(st.below);
      }
    }
    input.id = `kv-${st.field}`;
    input.name = st.field;
    input.addEventListener("input", () => (markPreset(null), syncFields()));
    label.append(input);
    fields.append(label);
  }
  for (const name of Object.keys(PRESETS)) {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = name;
    b.dataset.preset = name;
    b.setAttribute("aria-pressed", "false");
    b.addEventListener("click", () => applyPreset(name));
    $("presets").append(b);
  }
  applyPreset("kvcompress 4x");
}

/** A preset over the server's defaults: its method and budget, the rest as the server has it. */
function applyPreset(name) {
  const values = { ...defaults, rate: null, max_cache_tokens: null, ...PRESETS[name] };
  for (const st of settings) setField(st, values[st.field]);
  markPreset(name);
  syncFields();
}
let defaults = {};
function setField(st, v) {
  const el = $(`kv-${st.field}`);
  if (st.kind === "bool") el.checked = !!v;
  else el.value = v == null ? "" : String(v);
}
function markPreset(name) {
  for (const b of $("presets").children) b.setAttribute("aria-pressed", String(b.dataset.preset === name));
}
function compression() {
  const out = {};
  for (const st of settings) {
    const el = $(`kv-${st.field}`);
    if (st.kind === "bool") out[st.field] = el.checked;
    else if (st.kind === "enum") out[st.field] = el.value;
    else if (el.value !== "") out[st.field] = Number(el.value);
  }
  return out;
}
function syncFields() {
  const c = compression();
  for (const label of $("fields").children) {
    const used = USED_BY[label.dataset.field]?.(c.method, c) ?? (c.method !== "none" || label.dataset.field === "method");
    label.classList.toggle("off", !used);
  }
}

// --- chat
function addMessage(role, text) {
  const li = document.createElement("li");
  li.className = role;
  li.textContent = text;
  $("messages").append(li);
  li.scrollIntoView({ block: "end" });
  return li;
}

async function send(text) {
  messages.push({ role: "user", content: text });
  addMessage("user", text);
  const li = addMessage("assistant", "");
  const body = {
    messages,
    max_tokens: Number($("max-tokens").value) || undefined,
    temperature: Number($("temperature").value),
    stream: true,
    stream_options: { include_usage: true },
    kv_compression: compression(),
  };
  abort = new AbortController();
  setBusy(true);
  let id = null;
  let answer = "";
  let usage = null;
  let watching = null;
  try {
    const res = await fetch("/v1/chat/completions", { method: "POST", headers: headers(true), body: JSON.stringify(body), signal: abort.signal });
    if (!res.ok) throw new Error(await apiError(res));
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = "";
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      buf += value;
      let i;
      while ((i = buf.indexOf("\n\n")) >= 0) {
        const event = buf.slice(0, i);
        buf = buf.slice(i + 2);
        if (!event.startsWith("data: ") || event === "data: [DONE]") continue;
        const chunk = JSON.parse(event.slice(6));
        if (chunk.error) throw new Error(chunk.error.message);
        if (!id && chunk.id) {
          id = li.dataset.responseId = chunk.id;
          watching = watchMap(id);
        }
        const delta = chunk.choices?.[0]?.delta?.content;
        if (delta) li.textContent = answer += delta;
        if (chunk.usage) usage = chunk.usage;
      }
    }
    messages.push({ role: "assistant", content: answer });
    if (usage) {
      const meta = document.createElement("span");
      meta.className = "meta";
      const kv = usage.kv_cache;
      li.dataset.compressionRate = String(kv.compression_rate);
      meta.textContent = `${usage.completion_tokens} tokens · cache ${kv.blocks_used} of ${kv.blocks_uncompressed} blocks (${fmtRate(kv.compression_rate)}) · ${kv.evicted_tokens} evicted`;
      li.append(meta);
    }
  } catch (e) {
    if (e.name !== "AbortError") {
      li.className = "error";
      li.textContent = `${answer}${answer ? "\n" : ""}${e.message}`;
    }
    messages.pop();
  } finally {
    setBusy(false);
    abort = null;
    if (watching) await watching.stop();
  }
}

function setBusy(busy) {
  $("send").disabled = busy;
  $("stop").disabled = !busy;
}

// --- cache map
/** Polls the map of response `id` until stopped, then reads it once more (the map taken at its end). */
function watchMap(id) {
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      await loadMap(id);
      await new Promise((r) => setTimeout(r, MAP_POLL_MS));
    }
  })();
  return { stop: async () => ((stopped = true), await loop, await loadMap(id)) };
}

async function loadMap(id) {
  try {
    const res = await fetch(`/v1/kv_cache/${encodeURIComponent(id)}`, { headers: headers(false) });
    if (!res.ok) throw new Error(await apiError(res));
    drawMap(await res.json());
  } catch (e) {
    setPill($("map-status"), e.message, "bad");
  }
}

const fmtRate = (r) => `${r.toFixed(2)}x`;
const levelsOf = (b64) => Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));

function drawMap(m) {
  lastMap = m;
  setPill($("map-status"), `${m.status} · ${m.compression.method}`, m.status === "finished" ? "ok" : "");
  const t = m.totals;
  setTotals($("totals"), [
    ["rate", "achieved rate", fmtRate(t.compression_rate), t.compression_rate],
    ["blocks", "blocks used / uncompressed", `${t.blocks_used} / ${t.blocks_uncompressed}`],
    ["kept", "tokens kept (all heads)", String(t.tokens_kept)],
    ["evicted", "evicted tokens", String(t.evicted_tokens)],
    ["context", "context tokens", String(m.context_tokens)],
  ]);
  const grid = $("map");
  const L = m.layers, H = m.kv_heads;
  if (grid.dataset.shape !== `${L}x${H}`) buildGrid(grid, L, H);
  const ctx = Math.max(1, m.context_tokens);
  for (let i = 0; i < L * H; i++) {
    const cell = grid.querySelector(`[data-head="${i}"]`);
    const kept = m.tokens_kept[i];
    const has = kept !== undefined;
    cell.dataset.kept = has ? String(kept) : "";
    cell.dataset.blocks = has ? String(m.blocks[i]) : "";
    cell.textContent = has ? String(kept) : "";
    cell.style.setProperty("--pct", has ? `${Math.round((100 * Math.min(kept, ctx)) / ctx)}%` : "0%");
    cell.setAttribute("aria-label", `layer ${Math.floor(i / H)} head ${i % H}: ${has ? `${kept} of ${m.context_tokens} tokens kept, ${m.blocks[i]} blocks` : "no cache yet"}`);
  }
  drawStrips(m);
  showHead(selected);
}

function buildGrid(grid, L, H) {
  grid.replaceChildren();
  grid.dataset.shape = `${L}x${H}`;
  grid.style.gridTemplateColumns = `2rem repeat(${H}, auto)`;
  grid.append(axis(""));
  for (let h = 0; h < H; h++) grid.append(axis(`h${h}`));
  for (let l = 0; l < L; l++) {
    grid.append(axis(`L${l}`));
    for (let h = 0; h < H; h++) {
      const cell = document.createElement("button");
      cell.type = "button";
      cell.className = "cell";
      cell.setAttribute("role", "gridcell");
      cell.dataset.head = String(l * H + h);
      cell.tabIndex = l * H + h === selected ? 0 : -1;
      cell.addEventListener("click", () => showHead(l * H + h, true));
      cell.addEventListener("keydown", (e) => moveFocus(e, l, h, L, H));
      grid.append(cell);
    }
  }
}
function axis(text) {
  const d = document.createElement("div");
  d.className = "axis";
  d.textContent = text;
  return d;
}
function moveFocus(e, l, h, L, H) {
  const step = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1], Home: [-l, -h], End: [L - 1 - l, H - 1 - h] }[e.key];
  if (!step) return;
  e.preventDefault();
  const nl = Math.max(0, Math.min(L - 1, l + step[0]));
  const nh = Math.max(0, Math.min(H - 1, h + step[1]));
  showHead(nl * H + nh, true);
}

function showHead(i, focus = false) {
  selected = i;
  const m = lastMap;
  for (const c of $("map").querySelectorAll(".cell")) {
    const on = Number(c.dataset.head) === i;
    c.setAttribute("aria-selected", String(on));
    c.tabIndex = on ? 0 : -1;
    if (on && focus) c.focus();
  }
  if (!m || !m.positions) return;
  const H = m.kv_heads;
  const levels = levelsOf(m.positions.heads[i]);
  $("head-title").textContent = `Layer ${Math.floor(i / H)}, KV head ${i % H}: positions 0 to ${m.context_tokens - 1}, left to right (filled: kept)`;
  paintRows($("strip"), [levels], m.positions.bins);
  $("head-detail").textContent = `${m.tokens_kept[i]} tokens kept in ${m.blocks[i]} blocks of ${m.block_size}; ${Math.max(0, m.context_tokens - m.tokens_kept[i])} of ${m.context_tokens} positions gone`;
  drawStrips(m);
}

/** Every head's strip, one row each (layer-major), the picked one marked. */
function drawStrips(m) {
  if (!m.positions) return;
  paintRows($("strips"), m.positions.heads.map(levelsOf), m.positions.bins, selected);
}

function paintRows(canvas, rows, bins, mark = -1) {
  const css = getComputedStyle(document.documentElement);
  const kept = rgb(css.getPropertyValue("--kept")), gone = rgb(css.getPropertyValue("--gone")), accent = rgb(css.getPropertyValue("--heat"));
  canvas.width = bins;
  canvas.height = rows.length;
  const g = canvas.getContext("2d");
  const img = g.createImageData(bins, rows.length);
  rows.forEach((row, r) => {
    for (let b = 0; b < bins; b++) {
      const f = row[b] / 255;
      const o = (r * bins + b) * 4;
      const base = r === mark && row[b] === 0 ? accent.map((x, k) => (x + 3 * gone[k]) / 4) : gone;
      for (let k = 0; k < 3; k++) img.data[o + k] = Math.round(base[k] + (kept[k] - base[k]) * f);
      img.data[o + 3] = 255;
    }
  });
  g.putImageData(img, 0, 0);
}
function rgb(color) {
  const c = document.createElement("canvas").getContext("2d");
  c.fillStyle = color.trim() || "#888";
  const hex = c.fillStyle;
  return [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
}

// --- server view, from /metrics
const history = [];
let lastTokens = null;
async function pollServer() {
  try {
    const text = await (await fetch("/metrics")).text();
    const metric = (name) => {
      const line = text.split("\n").find((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `));
      return line ? Number(line.slice(line.lastIndexOf(" ") + 1)) : NaN;
    };
    const now = performance.now();
    const tokens = metric("vllm:generation_tokens_total");
    const rate = lastTokens ? ((tokens - lastTokens.n) * 1000) / (now - lastTokens.t) : 0;
    lastTokens = { n: tokens, t: now };
    const used = metric("kvc_kv_blocks_used"), total = metric("kvc_kv_blocks_total");
    history.push(used / total);
    if (history.length > HISTORY) history.shift();
    setTotals($("server"), [
      ["pool", "KV pool blocks used", `${used} / ${total} (${((100 * used) / total).toFixed(1)}%)`],
      ["running", "running", String(metric("vllm:num_requests_running"))],
      ["waiting", "waiting", String(metric("vllm:num_requests_waiting"))],
      ["tps", "tokens/s", rate.toFixed(1)],
    ]);
    drawPool();
  } catch {
    // the server went away; the health pill says so
  }
}
function drawPool() {
  const svg = $("pool-chart");
  const max = Math.max(0.05, ...history);
  const pts = history.map((v, i) => `${(300 * i) / (HISTORY - 1)},${80 - (76 * v) / max}`).join(" ");
  svg.innerHTML = `<line class="grid" x1="0" x2="300" y1="4" y2="4"/><line class="grid" x1="0" x2="300" y1="80" y2="80"/><polyline points="${pts}"/><title>pool occupancy, top line = ${(100 * max).toFixed(1)}%</title>`;
}

async function pollHealth() {
  try {
    const res = await fetch("/health");
    const h = await res.json();
    setPill($("health"), h.status === "ok" ? "ready" : h.status.replace("_", " "), res.ok ? "ok" : "");
  } catch {
    setPill($("health"), "unreachable", "bad");
  }
}

function setPill(el, text, kind) {
  el.textContent = text;
  el.className = `pill ${kind}`;
}
function setTotals(dl, items) {
  dl.replaceChildren(...items.map(([key, label, text, value]) => {
    const d = document.createElement("div");
    const dt = document.createElement("dt");
    const dd = document.createElement("dd");
    dt.textContent = label;
    dd.textContent = text;
    dd.id = `${dl.id}-${key}`;
    if (value !== undefined) dd.dataset.value = String(value);
    d.append(dt, dd);
    return d;
  }));
}

// --- start
async function start() {
  $("api-key").value = sessionStorage.getItem("kvc-api-key") ?? "";
  $("api-key").addEventListener("change", () => sessionStorage.setItem("kvc-api-key", $("api-key").value));
  const s = await (await fetch("/playground/settings.json")).json();
  $("model").textContent = `${s.model} · context ${s.max_context}`;
  defaults = s.defaults;
  buildControls(s);
  $("composer").addEventListener("submit", (e) => {
    e.preventDefault();
    const text = $("prompt").value.trim();
    if (!text || abort) return;
    $("prompt").value = "";
    send(text);
  });
  $("prompt").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      $("composer").requestSubmit();
    }
  });
  $("stop").addEventListener("click", () => abort?.abort());
  $("clear").addEventListener("click", () => {
    abort?.abort();
    messages.length = 0;
    $("messages").replaceChildren();
  });
  matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => lastMap && drawMap(lastMap));
  pollHealth();
  pollServer();
  setInterval(pollHealth, 3000);
  setInterval(pollServer, SERVER_POLL_MS);
}
start();

// ollama-router console: reads GET /router/events (server-sent events) with fetch(),
// so an API key can travel in the Authorization header (EventSource cannot send one),
// and redraws from each `snapshot` event. No dependencies, no build step.
"use strict";

const KEY_STORAGE = "ollama-router-key";
const MAX_EVENTS = 300;
const SPARK_POINTS = 60;
const STALE_MS = 5000; // no snapshot for this long: the connection is presumed dead
const $ = (id) => document.getElementById(id);

const state = {
  key: sessionStorage.getItem(KEY_STORAGE),
  lastEventId: null,
  snapshot: null,
  receivedAt: 0, // performance.now() when the snapshot arrived
  events: [], // newest first
  coldLoads: new Map(), // model -> recent cold_load events, newest first
  sparks: new Map(), // container -> recent tokens/s figures
  cards: new Map(),
  rows: new Map(),
  controller: null,
  backoff: 500,
  instance: null,
};

// ---------------------------------------------------------------- formatting

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else node.setAttribute(name, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

function num(value, digits = 1) {
  if (value === null || value === undefined) return "–";
  return Number(value).toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: 0 });
}

function seconds(value) {
  if (value === null || value === undefined) return "–";
  return value < 1 ? `${Math.round(value * 1000)} ms` : `${value.toFixed(2)} s`;
}

function pair(p50, p95) {
  if (p50 === null || p50 === undefined) return "–";
  if (p95 < 1) return `${Math.round(p50 * 1000)} / ${Math.round(p95 * 1000)} ms`;
  return `${seconds(p50)} / ${seconds(p95)}`;
}

function bytes(value) {
  if (!value) return "–";
  const gib = value / 2 ** 30;
  return gib >= 1 ? `${gib.toFixed(1)} GiB` : `${Math.round(value / 2 ** 20)} MiB`;
}

function span(totalSeconds) {
  let s = Math.max(0, Math.round(totalSeconds));
  const d = Math.floor(s / 86400); s -= d * 86400;
  const h = Math.floor(s / 3600); s -= h * 3600;
  const m = Math.floor(s / 60); s -= m * 60;
  if (d > 1) return `${d}d ${h}h`;
  if (d) return `${24 + h}h ${String(m).padStart(2, "0")}m`;
  if (h) return `${h}h ${String(m).padStart(2, "0")}m`;
  if (m) return `${m}m ${String(s).padStart(2, "0")}s`;
  return `${s}s`;
}

function clock(epochSeconds) {
  return new Date(epochSeconds * 1000).toLocaleTimeString("en-GB", { hour12: false });
}

function contextLength(tokens) {
  if (!tokens) return "–";
  return tokens >= 1024 && tokens % 1024 === 0 ? `${tokens / 1024}K` : num(tokens, 0);
}

// the router's clock now, from the last snapshot (countdowns do not depend on this machine's clock)
function serverNow() {
  if (!state.snapshot) return Date.now() / 1000;
  return state.snapshot.now + (performance.now() - state.receivedAt) / 1000;
}

function epoch(iso) {
  return iso ? Date.parse(iso) / 1000 : null;
}

// ---------------------------------------------------------------- the stream

function setLink(kind, text) {
  document.body.dataset.link = kind;
  setText($("link-text"), text);
}

async function connect() {
  state.controller?.abort();
  const controller = (state.controller = new AbortController());
  const headers = { Accept: "text/event-stream" };
  if (state.key) headers.Authorization = `Bearer ${state.key}`;
  if (state.lastEventId) headers["Last-Event-ID"] = state.lastEventId;
  setLink("connecting", "connecting…");
  let response;
  try {
    response = await fetch("/router/events", { headers, signal: controller.signal, cache: "no-store" });
  } catch {
    return retry("router unreachable");
  }
  if (response.status === 401) {
    const reason = await errorText(response);
    return askForKey(state.key ? `The router refused this key: ${reason}.` : null);
  }
  if (!response.ok) {
    const reason = await errorText(response);
    const wait = Number(response.headers.get("Retry-After")) * 1000 || undefined;
    return retry(`${response.status}: ${reason}`, wait);
  }
  const watchdog = setInterval(() => {
    if (performance.now() - state.receivedAt > STALE_MS) controller.abort();
  }, 1000);
  state.receivedAt = performance.now();
  try {
    await read(response.body.getReader());
  } catch {
    // aborted (stale, a new key) or the connection broke: reconnect below
  } finally {
    clearInterval(watchdog);
  }
  if (controller === state.controller && !state.stopped) retry("connection lost");
}

async function errorText(response) {
  try {
    const body = await response.json();
    return body.error?.message || body.error || response.statusText;
  } catch {
    return response.statusText || "error";
  }
}

function retry(reason, wait) {
  const delay = wait ?? state.backoff;
  state.backoff = Math.min(state.backoff * 2, 5000);
  setLink("down", `${reason}; retrying in ${Math.ceil(delay / 1000)} s`);
  setTimeout(connect, delay);
}

async function read(reader) {
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      dispatch(buffer.slice(0, end));
      buffer = buffer.slice(end + 2);
    }
  }
}

function dispatch(block) {
  let id = null;
  let kind = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (!line || line.startsWith(":")) continue; // a heartbeat comment
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "id") id = value;
    else if (field === "event") kind = value;
    else if (field === "data") data.push(value);
  }
  if (id) {
    state.lastEventId = id;
    state.instance = id.split(".")[0];
  }
  if (!data.length) return;
  const payload = JSON.parse(data.join("\n"));
  if (kind === "snapshot") onSnapshot(payload);
  else if (kind === "revoked") askForKey(`This key is no longer valid: ${payload.error}.`);
  else if (kind === "dropped") addEvent({ kind: "dropped", at: serverNow(), ...payload });
  else addEvent(payload);
}

// ---------------------------------------------------------------- the key

function askForKey(error) {
  state.stopped = true;
  state.controller?.abort();
  setLink("down", "waiting for an API key");
  const dialog = $("key-dialog");
  $("key-error").hidden = !error;
  setText($("key-error"), error || "");
  $("key-input").value = "";
  if (!dialog.open) dialog.showModal();
  $("key-input").focus();
}

$("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const key = $("key-input").value.trim();
  if (!key) return;
  state.key = key;
  sessionStorage.setItem(KEY_STORAGE, key);
  $("key-dialog").close();
  state.stopped = false;
  state.lastEventId = null;
  state.events = [];
  $("events").replaceChildren();
  connect();
});

$("key-dialog").addEventListener("cancel", (event) => event.preventDefault()); // nothing to see without a key

$("change-key").addEventListener("click", () => {
  sessionStorage.removeItem(KEY_STORAGE);
  state.key = null;
  askForKey(null);
});

// ---------------------------------------------------------------- snapshots

function onSnapshot(snapshot) {
  state.snapshot = snapshot;
  state.receivedAt = performance.now();
  state.backoff = 500;
  setLink("live", "live");
  for (const c of snapshot.containers) {
    const figures = snapshot.window.containers[c.name];
    const points = state.sparks.get(c.name) || [];
    points.push(figures ? figures.tokens_per_s : 0);
    if (points.length > SPARK_POINTS) points.shift();
    state.sparks.set(c.name, points);
  }
  renderHeader(snapshot);
  renderTotals(snapshot);
  renderContainers(snapshot);
  renderModels(snapshot);
}

function renderHeader(s) {
  const ready = s.ready ? "ready" : "not ready";
  const count = (n, what) => `${n} ${what}${n === 1 ? "" : "s"}`;
  setText($("fleet"), `${ready} · up ${span(s.uptime_seconds)} · ${count(s.containers.length, "container")} · ${count(s.models.length, "model")}`);
  $("fleet").dataset.ready = s.ready;
  const v = s.viewer;
  const text = v.key === null ? "open router (no keys file)" : v.admin ? `key ${v.key} (admin)` : `key ${v.key} (its own models only)`;
  setText($("viewer-text"), text);
  $("change-key").hidden = v.key === null;
}

// the fleet strip: (name, label, value from the last minute's figures and the snapshot)
const TOTALS = [
  ["requests_per_s", "requests/s", (f) => num(f.requests_per_s, 2)],
  ["ttft", "TTFT p50 / p95", (f) => pair(f.ttft_p50, f.ttft_p95)],
  ["tokens_per_s", "tokens/s, all GPUs", (f) => num(f.tokens_per_s, 1)],
  ["speed_p50", "answer tok/s p50", (f) => num(f.speed_p50, 1)],
  ["in_flight", "in flight · queued", (f, s) => {
    const sum = (field) => s.containers.reduce((total, c) => total + c[field], 0);
    return `${sum("in_flight")}/${sum("limit")} · ${sum("queued")}`;
  }],
  ["errors", "errors", (f) => num(f.errors, 0)],
  ["fallbacks", "fallbacks", (f) => num(f.fallbacks, 0)],
  ["cold_loads", "cold loads", (f) => num(f.cold_loads, 0)],
];
const ALERTING = new Set(["errors", "fallbacks", "cold_loads"]);

function renderTotals(s) {
  const list = $("totals");
  const figures = s.window.total;
  if (!list.childElementCount) {
    for (const [name, label] of TOTALS) {
      list.append(el("div", { class: "total", "data-name": name }, el("dt", { text: label }), el("dd", { "data-total": name })));
    }
  }
  for (const [name, , format] of TOTALS) {
    const dd = list.querySelector(`[data-total="${name}"]`);
    setText(dd, format(figures, s));
    dd.parentElement.dataset.alert = ALERTING.has(name) && figures[name] > 0;
  }
}

// ---------------------------------------------------------------- containers

function phaseText(c, now) {
  switch (c.state) {
    case "down": {
      const since = epoch(c.down_since);
      return since ? `down since ${clock(since)} (${span(now - since)})` : "down";
    }
    case "ejected": {
      const until = epoch(c.ejected_until);
      return until ? `ejected until ${clock(until)} (${span(until - now)} left)` : "ejected";
    }
    case "probation": return "probation: one request at a time";
    case "draining": return "draining: removed from the catalog";
    case "warming": return "warming: preloading its models";
    case "unknown": return "not probed yet";
    default: return "up";
  }
}

function bar(label) {
  const fill = el("span", { class: "fill" });
  const value = el("span", { class: "value" });
  const root = el("div", { class: "bar", role: "meter", "aria-valuemin": "0" },
    el("span", { class: "bar-label", text: label }), el("span", { class: "track" }, fill), value);
  return { root, fill, value, label };
}

function setBar(b, current, max) {
  const ratio = max > 0 ? Math.min(1, current / max) : 0;
  b.fill.style.width = `${(ratio * 100).toFixed(1)}%`;
  b.root.dataset.level = current === 0 ? "idle" : ratio >= 1 ? "full" : "busy";
  b.root.setAttribute("aria-valuenow", String(current));
  b.root.setAttribute("aria-valuemax", String(max));
  b.root.setAttribute("aria-label", `${b.label}: ${current} of ${max}`);
  setText(b.value, `${current}/${max}`);
}

function stat(name, label) {
  return el("dd", { "data-stat": name, "data-label": label });
}

function newCard(name) {
  const title = el("h3", { id: `c-${name}`, text: name });
  const pill = el("span", { class: "pill" });
  const gpus = el("span", { class: "gpus" });
  const meta = el("p", { class: "meta" });
  const detail = el("p", { class: "detail" });
  const inFlight = bar("in flight");
  const queue = bar("queued");
  const stats = {
    rps: stat("rps", "req/s"), ttft: stat("ttft", "TTFT p50 / p95"), tps: stat("tps", "tok/s"),
    errors: stat("errors", "errors"), fallbacks: stat("fallbacks", "fallb."),
  };
  const spark = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  spark.setAttribute("class", "spark");
  spark.setAttribute("viewBox", `0 0 ${SPARK_POINTS - 1} 20`);
  spark.setAttribute("preserveAspectRatio", "none");
  spark.setAttribute("role", "img");
  const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
  spark.append(line);
  const held = el("tbody");
  const caption = el("caption", { text: "Models held" });
  const heldTable = el("table", { class: "held" },
    caption,
    el("thead", {}, el("tr", {}, el("th", { scope: "col", text: "model" }), el("th", { scope: "col", class: "num", text: "VRAM" }),
      el("th", { scope: "col", class: "num", text: "expires in" }))),
    held);
  const sparkBox = el("div", { class: "spark-box" }, spark, el("span", { class: "spark-label", "aria-hidden": "true", text: "tok/s · 60 s" }));
  const root = el("article", { class: "card", tabindex: "0", "aria-labelledby": `c-${name}`, "data-container": name },
    el("header", {}, title, gpus, pill), meta, detail, inFlight.root, queue.root,
    el("dl", { class: "stats" }, ...Object.values(stats).map((dd) => el("div", {}, el("dt", { text: dd.dataset.label }), dd))),
    sparkBox, heldTable);
  return { root, pill, gpus, meta, detail, inFlight, queue, stats, spark, line, held, caption };
}

// one element per name, made once and then updated in place (so focus and scrolling survive a redraw),
// removed when its name is gone
function keyed(entries, parent, items, nameOf, make, update) {
  const seen = new Set();
  for (const item of items) {
    const name = nameOf(item);
    seen.add(name);
    let entry = entries.get(name);
    if (!entry) {
      entry = make(name);
      entries.set(name, entry);
      parent.append(entry.root);
    }
    update(entry, item);
  }
  for (const [name, entry] of entries) {
    if (!seen.has(name)) {
      entry.root.remove();
      entries.delete(name);
    }
  }
}

// the last minute's figures into their cells (a container's card, a model's row)
function showFigures(cells, f, windowSeconds) {
  setText(cells.rps, f ? num(f.requests_per_s, 2) : "0");
  cells.rps.title = `${f ? f.requests : 0} requests in the last ${windowSeconds} s`;
  setText(cells.ttft, f ? pair(f.ttft_p50, f.ttft_p95) : "–");
  setText(cells.tps, f ? num(f.tokens_per_s, 1) : "0");
  setText(cells.errors, f ? num(f.errors, 0) : "0");
  setText(cells.fallbacks, f ? num(f.fallbacks, 0) : "0");
  cells.errors.dataset.alert = Boolean(f && f.errors);
}

function renderContainers(s) {
  const now = serverNow();
  keyed(state.cards, $("containers"), s.containers, (c) => c.name, newCard, (card, c) => {
    const text = phaseText(c, now);
    card.root.dataset.state = c.state;
    card.root.setAttribute("aria-description", `state: ${text}`);
    setText(card.pill, c.state);
    card.pill.setAttribute("aria-label", `state: ${c.state}`);
    setText(card.gpus, c.gpus.length ? `GPU ${c.gpus.join(", ")}` : "no GPU pinned");
    const version = c.version ? `Ollama ${c.version}` : "version unknown";
    setText(card.meta, `${version} · served ${num(c.served, 0)} · failed ${num(c.failures, 0)}`);
    const why = c.state !== "up" && c.last_error ? ` — ${c.last_error}` : "";
    setText(card.detail, text + why);
    setBar(card.inFlight, c.in_flight, c.limit);
    setBar(card.queue, c.queued, c.max_queue);
    showFigures(card.stats, s.window.containers[c.name], s.window.seconds);
    drawSpark(card, state.sparks.get(c.name) || []);
    setText(card.caption, c.state === "down" ? "Models held when last seen" : "Models held");
    renderHeld(card, c.loaded, now);
  });
  $("no-containers").hidden = s.containers.length > 0;
}

function drawSpark(card, points) {
  const top = Math.max(1, ...points);
  const offset = SPARK_POINTS - points.length;
  card.line.setAttribute("points", points.map((p, i) => `${i + offset},${(20 - (p / top) * 18).toFixed(1)}`).join(" "));
  card.spark.setAttribute("aria-label", `tokens per second over the last ${points.length} s, peak ${num(top, 1)}`);
}

function renderHeld(card, loaded, now) {
  const rows = loaded.map((m) => {
    const expires = epoch(m.expires_at);
    const left = expires === null ? "never" : expires - now <= 0 ? "expired" : span(expires - now);
    const row = el("tr", {}, el("td", { text: m.model }), el("td", { class: "num", text: bytes(m.size_vram) }),
      el("td", { class: "num", text: left }));
    if (expires !== null && expires - now < 300) row.dataset.soon = "true";
    return row;
  });
  if (!rows.length) rows.push(el("tr", {}, el("td", { colspan: "3", class: "empty", text: "no model loaded" })));
  const signature = rows.map((r) => r.textContent).join("|");
  if (card.held.dataset.signature !== signature) {
    card.held.replaceChildren(...rows);
    card.held.dataset.signature = signature;
  }
}

// ---------------------------------------------------------------- models

function newRow(tag) {
  const cells = {};
  const root = el("tr", { "data-model": tag });
  for (const name of ["model", "containers", "fallback", "context", "capabilities", "rps", "ttft", "tps", "errors", "fallbacks", "cold"]) {
    cells[name] = el(name === "model" ? "th" : "td", name === "model" ? { scope: "row", "data-cell": name } : { "data-cell": name });
    if (["context", "rps", "ttft", "tps", "errors", "fallbacks"].includes(name)) cells[name].className = "num";
    root.append(cells[name]);
  }
  return { root, cells };
}

function renderModels(s) {
  keyed(state.rows, $("models").tBodies[0], s.models, (m) => m.model, newRow, (r, m) => {
    const c = r.cells;
    const signature = JSON.stringify([m.aliases, m.containers, m.ready, m.up, m.fallback, m.capabilities]);
    if (r.signature !== signature) {
      r.signature = signature;
      c.model.replaceChildren(el("span", { class: "tag", text: m.model }),
        ...(m.aliases.length ? [el("span", { class: "aliases", text: `aka ${m.aliases.join(", ")}` })] : []));
      c.containers.replaceChildren(...m.containers.map((name) => {
        const ready = m.ready.includes(name);
        const up = m.up.includes(name);
        const label = ready ? "ready" : up ? "up, model not loaded" : "not serving";
        return el("span", { class: "chip", "data-ready": ready, "data-up": up, title: label, "aria-label": `${name}: ${label}` },
          el("span", { class: "mark", "aria-hidden": "true", text: ready ? "✓" : up ? "○" : "✕" }), name);
      }));
      c.fallback.textContent = m.fallback.length ? m.fallback.join(" → ") : "–";
      c.capabilities.replaceChildren(...m.capabilities.map((cap) => el("span", { class: "cap", text: cap })));
    }
    setText(c.context, contextLength(m.context_length));
    const f = s.window.models[m.model];
    showFigures(c, f, s.window.seconds);
    const last = (state.coldLoads.get(m.model) || [])[0];
    const count = `${f ? f.cold_loads : 0} in last min`;
    setText(c.cold, last ? `${count} · last ${clock(last.at)} on ${last.container} (${num(last.load_seconds, 2)} s)` : count);
  });
}

// ---------------------------------------------------------------- events

const TONE = {
  container_down: "bad", container_ejected: "bad", stream_broken: "bad", keepwarm_failed: "bad",
  catalog_reload_refused: "bad", keys_reload_failed: "bad", key_rate_limited: "warn", dropped: "warn",
  fallback_served: "warn", cold_load: "warn", container_probation: "warn", container_draining: "warn",
  keepwarm_reload: "warn", container_warming: "info", container_added: "info", container_removed: "info",
  container_up: "good", catalog_reloaded: "good", keys_reloaded: "good",
};

function describe(e) {
  const on = e.container ? ` on ${e.container}` : "";
  const why = e.reason ? `: ${e.reason}` : "";
  switch (e.kind) {
    case "container_down": return `${e.container} is down${why}`;
    case "container_up": return `${e.container} is up${e.previous ? ` (was ${e.previous})` : ""}`;
    case "container_ejected": return `${e.container} ejected${e.seconds ? ` for ${num(e.seconds, 1)} s` : ""}${why}`;
    case "container_probation": return `${e.container} on probation${why}`;
    case "container_draining": return `${e.container} draining${why}`;
    case "container_warming": return `${e.container} warming up (preloading its models)`;
    case "container_added": return `${e.container} added`;
    case "container_removed": return `${e.container} removed`;
    case "fallback_served": return `${e.model} served by ${e.to || "a fallback"}${on}${why}`;
    case "stream_broken": return `stream of ${e.model || "a request"} broke${on}${why}`;
    case "cold_load": return `${e.model} cold load${on}: ${num(e.load_seconds, 2)} s`;
    case "keepwarm_reload": return `reloading ${e.model}${on} (it was no longer loaded)`;
    case "keepwarm_failed": return `keep-warm of ${e.model}${on} failed${why}`;
    case "catalog_reloaded": return `catalog reloaded${e.added ? `, added ${e.added.join(", ")}` : ""}${e.removed ? `, removed ${e.removed.join(", ")}` : ""}`;
    case "catalog_reload_refused": return `catalog reload refused: ${e.error}`;
    case "keys_reloaded": return `keys file reloaded (${e.keys} keys)`;
    case "keys_reload_failed": return `keys file reload failed: ${e.error}`;
    case "key_rate_limited": return `key ${e.key} over its rate (retry in ${num(e.retry_after, 1)} s)`;
    case "dropped": return `${e.dropped} events missed (this connection was too slow to take them)`;
    default: {
      const rest = Object.entries(e).filter(([k]) => !["id", "kind", "at"].includes(k)).map(([k, v]) => `${k}=${v}`);
      return `${e.kind} ${rest.join(" ")}`;
    }
  }
}

function addEvent(e) {
  if (e.kind === "cold_load") {
    const list = state.coldLoads.get(e.model) || [];
    list.unshift(e);
    state.coldLoads.set(e.model, list.slice(0, 5));
  }
  const text = describe(e);
  const tone = TONE[e.kind] || "info";
  const item = el("li", { "data-tone": tone, "data-kind": e.kind },
    el("time", { datetime: new Date(e.at * 1000).toISOString(), text: clock(e.at) }),
    el("span", { class: "kind", text: e.kind.replaceAll("_", " ") }),
    el("span", { class: "what", text }));
  item.hidden = !matches(item);
  const list = $("events");
  list.prepend(item);
  state.events.unshift(e);
  if (state.events.length > MAX_EVENTS) {
    state.events.length = MAX_EVENTS;
    list.lastElementChild.remove();
  }
  setText($("event-count"), `${state.events.length} kept`);
}

function matches(item) {
  const filter = $("event-filter").value.trim().toLowerCase();
  return !filter || item.textContent.toLowerCase().includes(filter);
}

$("event-filter").addEventListener("input", () => {
  for (const item of $("events").children) item.hidden = !matches(item);
});

connect();

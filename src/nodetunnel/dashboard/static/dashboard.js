// nodetunnel dashboard: live cards (server-sent events), buttons, the New session form, logs.
// Plain JavaScript, no dependencies; everything from the server is set as text, never as HTML.
"use strict";

const CSRF = document.querySelector('meta[name="csrf"]').content;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "text") node.textContent = value;
    else if (key === "className") node.className = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) if (child) node.append(child);
  return node;
}

async function post(url, fields) {
  const response = await fetch(url, {
    method: "POST", body: JSON.stringify(fields || {}), credentials: "same-origin",
    headers: {"X-CSRF-Token": CSRF, "Content-Type": "application/json"},
  });
  let data = {};
  try { data = await response.json(); } catch (e) { data = {error: `HTTP ${response.status}`}; }
  return {ok: response.ok, data};
}

function duration(seconds) {
  seconds = Math.max(0, Math.round(seconds));
  if (seconds < 120) return `${seconds} s`;
  if (seconds < 7200) return `${Math.floor(seconds / 60)} min`;
  if (seconds >= 300 * 86400) return "unlimited";
  return `${Math.floor(seconds / 3600)} h ${Math.floor((seconds % 3600) / 60)} min`;
}

// ------------------------------------------------------------------ the cards
function pendingText(p) {
  const parts = [];
  parts.push(`reason: ${p.reason || "none given"}`);
  parts.push(`estimated start: ${p.estimated_start || "not known yet"}`);
  if (p.position) parts.push(`place in queue: ${p.position}` + (p.pending_in_partition ? ` of ${p.pending_in_partition}` : ""));
  return parts.join(" · ");
}

function timeLeft(card) {
  if (!card.ends_at || card.ended) return null;
  const wrap = el("div", {className: "timeleft", "data-ends": card.ends_at,
                          "data-starts": card.starts_at || "", "data-warn": card.warn_before_s || 0});
  wrap.append(el("progress", {max: 100, value: 100, "aria-label": "time left"}),
              el("span", {className: "left"}));
  updateTimeLeft(wrap);
  return wrap;
}

function updateTimeLeft(wrap) {
  const now = Date.now() / 1000;
  const ends = Number(wrap.dataset.ends), starts = Number(wrap.dataset.starts) || null;
  const left = ends - now;
  const total = starts ? Math.max(ends - starts, 1) : Math.max(left, 1);
  const bar = wrap.querySelector("progress");
  bar.value = Math.max(0, Math.min(100, 100 * left / total));
  const warn = Number(wrap.dataset.warn) > 0 && left <= Number(wrap.dataset.warn);
  wrap.classList.toggle("warn", warn);
  wrap.querySelector(".left").textContent =
    `${duration(left)} left` + (warn ? " — the time limit is near: save your work" : "");
}

function openHref(card, app) {  // like 'nodetunnel open ID APP': 1 is the main app
  return app.number === 1 ? `/open/${card.id}` : `/open/${card.id}/${encodeURIComponent(app.number)}`;
}

function renderCard(card) {
  const node = el("article", {className: `card s-${card.state}`, "data-id": card.id,
                              "data-state": card.state, "aria-label": `${card.app} ${card.id}`});
  node.append(el("h3", {}, el("span", {text: card.app}), el("span", {className: "sid", text: card.id})));
  node.append(el("p", {}, el("span", {className: "badge state", text: card.state_text})));
  const dl = el("dl");
  const row = (k, v) => { if (v !== "" && v !== null && v !== undefined) dl.append(el("dt", {text: k}), el("dd", {text: v})); };
  row("cluster", card.cluster);
  row("job", card.job_id);
  row("node", card.node);
  let tunnel = card.tunnel;
  if (tunnel === "elsewhere") {
    tunnel = card.state === "PENDING" ? "not open yet: the job waits" :
      `not on this machine (nodetunnel attach ${card.id} --cluster ${card.cluster})`;
  }
  if (card.reconnects) tunnel += ` (${card.reconnects} reconnects)`;
  if (card.here && !card.starting && !card.ended) tunnel += card.attached ? ", kept in the background" : ", not kept";
  row("tunnel", tunnel);
  const apps = card.apps && card.apps.length ? card.apps : [{name: card.app, number: 1, url: card.url}];
  for (const app of apps) {  // every app of the job (--with): its name and its URL
    if (!app.url) continue;
    const link = card.can_open ?
      el("a", {href: openHref(card, app), target: "_blank", rel: "noopener", text: app.url}) : app.url;
    dl.append(el("dt", {text: apps.length > 1 ? `URL: ${app.name}` : "URL"}), el("dd", {className: "url"}, link));
  }
  node.append(dl);
  if (card.pending) node.append(el("p", {className: "pending", text: pendingText(card.pending)}));
  if (card.cause) node.append(el("p", {className: "cause", text: card.cause}));
  if (card.problem) node.append(el("p", {className: "error", text: card.problem}));
  const bar = timeLeft(card);
  if (bar) node.append(bar);
  if (card.progress && card.progress.length) {
    const list = el("ul", {className: "progress-lines", "aria-label": "progress"});
    for (const line of card.progress) list.append(el("li", {text: line}));
    node.append(list);
  }
  if (card.error) node.append(el("p", {className: "error", text: card.error}));
  const actions = el("div", {className: "actions"});
  if (card.can_open) {
    for (const app of apps) {
      const main = app.number === 1;
      actions.append(el("a", {className: main ? "button primary" : "button", href: openHref(card, app),
                              target: "_blank", rel: "noopener", "data-act": main ? "open" : `open-${app.number}`,
                              text: apps.length > 1 ? `Open ${app.name}` : "Open"}));
    }
  }
  if (card.can_logs) actions.append(el("a", {className: "button", href: `/logs/${card.id}`, target: "_blank", rel: "noopener", "data-act": "logs", text: "Logs"}));
  if (card.can_attach) actions.append(el("button", {type: "button", className: "primary", "data-act": "attach", text: card.here ? "Attach" : "Attach here"}));
  if (card.can_ssh) actions.append(el("button", {type: "button", "data-act": "ssh", text: "Copy ssh-config entry"}));
  if (card.can_stop) actions.append(el("button", {type: "button", className: "danger", "data-act": "stop", text: "Stop"}));
  if (card.dismissable) actions.append(el("button", {type: "button", "data-act": "dismiss", text: "Dismiss"}));
  node.append(actions);
  node.append(el("p", {className: "error action-error", "aria-live": "polite"}));
  return node;
}

function renderBoard(data) {
  const cards = document.getElementById("cards");
  const focused = document.activeElement;
  const focusKey = focused && focused.closest(".card") ?
    [focused.closest(".card").dataset.id, focused.dataset.act] : null;
  cards.replaceChildren(...data.cards.map(renderCard));
  document.getElementById("empty").hidden = data.cards.length > 0;
  const problems = document.getElementById("problems");
  problems.replaceChildren(...(data.problems || []).map((p) => el("li", {text: p})));
  const events = document.getElementById("events");
  events.replaceChildren(...(data.events || []).slice().reverse().map((e) =>
    el("li", {class: `event ${e.kind}`},
       el("time", {text: new Date(e.at * 1000).toLocaleTimeString()}), ` ${e.id}: ${e.message}`)));
  document.getElementById("events-box").hidden = !(data.events || []).length;
  if (focusKey) {  // keep the keyboard focus where it was across updates
    const again = cards.querySelector(`.card[data-id="${focusKey[0]}"] [data-act="${focusKey[1]}"]`);
    if (again) again.focus();
  }
  const at = data.refreshed_at ? new Date(data.refreshed_at * 1000).toLocaleTimeString() : "not yet";
  document.getElementById("status").textContent = `live · asked the scheduler at ${at}`;
  // For measurements: how long after the scheduler's answer this update was on the page.
  window.nodetunnelLastUpdate = {
    lagMs: data.refreshed_at ? Date.now() - data.refreshed_at * 1000 : null, count: data.cards.length,
  };
}

function board() {
  const source = new EventSource("/events");
  source.addEventListener("cards", (event) => renderBoard(JSON.parse(event.data)));
  source.onerror = () => { document.getElementById("status").textContent = "reconnecting…"; };
  setInterval(() => document.querySelectorAll(".timeleft").forEach(updateTimeLeft), 1000);
  const stopDialog = document.getElementById("confirm-stop");
  let stopping = null;
  stopDialog.addEventListener("close", async () => {
    if (stopDialog.returnValue !== "stop" || !stopping) return;
    const {id, node} = stopping;
    stopping = null;
    node.querySelectorAll("button").forEach((b) => { b.disabled = true; });
    node.querySelector(".badge").textContent = "stopping…";
    const {ok, data} = await post(`/api/sessions/${id}/stop`);
    if (!ok) {
      node.querySelector(".action-error").textContent = data.error || "could not stop";
      node.querySelectorAll("button").forEach((b) => { b.disabled = false; });
    }
  });
  document.getElementById("cards").addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-act]");
    if (!button) return;
    const node = button.closest(".card"), id = node.dataset.id;
    if (button.dataset.act === "stop") {
      stopping = {id, node};
      document.getElementById("confirm-text").textContent =
        `Session ${id}: its job is cancelled and its tunnel closed; unsaved work in the app is lost.`;
      stopDialog.showModal();
    } else if (button.dataset.act === "ssh") {
      const {ok, data} = await post(`/api/sessions/${id}/ssh-config`);
      if (!ok) { node.querySelector(".action-error").textContent = data.error; return; }
      document.getElementById("ssh-name").textContent = data.name;
      document.getElementById("ssh-include").textContent = data.include;
      document.getElementById("ssh-entry").textContent = data.entry;
      try { await navigator.clipboard.writeText(data.entry); } catch (e) { /* shown instead */ }
      document.getElementById("ssh-dialog").showModal();
    } else if (button.dataset.act === "attach") {
      button.disabled = true;
      const {ok, data} = await post(`/api/sessions/${id}/attach`);
      if (!ok) { node.querySelector(".action-error").textContent = data.error; button.disabled = false; }
    } else if (button.dataset.act === "dismiss") {
      await post(`/api/sessions/${id}/dismiss`);
    }
  });
}

// --------------------------------------------------------------- the form
function newSession() {
  const form = document.getElementById("new-session");
  for (const select of form.querySelectorAll("select[data-reload]")) {
    select.addEventListener("change", () => {
      const q = new URLSearchParams({cluster: form.cluster.value, app: form.app.value});
      window.location.assign(`/new?${q}`);
    });
  }
  const showErrors = (errors) => {
    form.querySelectorAll(".error").forEach((p) => { p.textContent = ""; });
    form.querySelectorAll("[aria-invalid]").forEach((i) => i.removeAttribute("aria-invalid"));
    let first = null;
    for (const [name, message] of Object.entries(errors || {})) {
      const target = document.getElementById(`err-${name}`) || document.getElementById("err-_form");
      target.textContent = message;
      const input = document.getElementById(`f-${name}`);
      if (input) { input.setAttribute("aria-invalid", "true"); first = first || input; }
    }
    if (first) first.focus();
  };
  const out = document.getElementById("preview-out");
  document.getElementById("preview").addEventListener("click", async () => {
    out.textContent = "…";
    const {ok, data} = await post("/api/preview", Object.fromEntries(new FormData(form)));
    showErrors(ok ? {} : data.errors || {_form: data.error});
    out.textContent = ok ? data.script : "(fix the fields marked above)";
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const start = document.getElementById("start");
    start.disabled = true;
    const {ok, data} = await post("/api/start", Object.fromEntries(new FormData(form)));
    start.disabled = false;
    if (!ok) { showErrors(data.errors || {_form: data.error}); return; }
    window.location.assign(`/#${data.session_id}`);
  });
}

// --------------------------------------------------------------- the logs
function logs() {
  const pre = document.getElementById("log"), status = document.getElementById("log-status");
  const source = new EventSource(`/logs/${pre.dataset.sid}/events`);
  source.addEventListener("line", (event) => {
    const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    pre.append(JSON.parse(event.data) + "\n");
    if (atEnd) pre.scrollTop = pre.scrollHeight;
    status.textContent = "following";
  });
  source.addEventListener("problem", (event) => { status.textContent = JSON.parse(event.data); });
  source.addEventListener("end", () => { status.textContent = "the log ended"; source.close(); });
}

if (document.getElementById("board")) board();
if (document.getElementById("new-session")) newSession();
if (document.getElementById("log")) logs();

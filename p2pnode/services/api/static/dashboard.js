// The dashboard reads the node's JSON API once, then follows its live events (GET /events).
// Everything it shows comes from the network (a miner chooses its model name), so values are
// written with textContent only and never parsed as HTML; charts are SVG images from the node.
"use strict";

const RAO_PER_TAO = 1e9;
const MAX_EVENTS_SHOWN = 40;
let currentNetuid = null;
let lastChartHeight = -1;

function byId(id) {
  return document.getElementById(id);
}

function tao(rao) {
  return (Number(rao) / RAO_PER_TAO).toLocaleString(undefined, {maximumFractionDigits: 4}) + " τ";
}

function short(text, length) {
  const s = String(text ?? "");
  return s.length > length ? s.slice(0, length) + "…" : s;
}

function cell(tag, text, className) {
  const element = document.createElement(tag);
  element.textContent = text === null || text === undefined ? "–" : String(text);
  if (className) element.className = className;
  return element;
}

// columns: [heading, row -> value, className?]
function renderTable(table, columns, rows, decorate) {
  const header = document.createElement("tr");
  columns.forEach(([heading]) => header.appendChild(cell("th", heading)));
  const lines = rows.map((row) => {
    const line = document.createElement("tr");
    columns.forEach(([, value, className]) => line.appendChild(cell("td", value(row), className)));
    if (decorate) decorate(line, row);
    return line;
  });
  table.replaceChildren(header, ...lines);
}

async function getJson(path) {
  const reply = await fetch(path, {headers: {Accept: "application/json"}});
  if (!reply.ok) throw new Error(`${path}: ${reply.status}`);
  return reply.json();
}

async function loadStatus() {
  const s = await getJson("/status");
  byId("chain-id").textContent = s.chain_id;
  byId("head-height").textContent = s.head_height;
  byId("finalized-height").textContent = s.finalized_height ?? "–";
  byId("finality-lag").textContent = s.finalized_height === null ? "–" : s.head_height - s.finalized_height;
  byId("peer-count").textContent = s.peers;
  byId("mempool").textContent = s.mempool;
  byId("syncing").textContent = s.syncing ? "syncing" : "synced";
}

async function loadSupply() {
  const supply = await getJson("/supply");
  byId("staked").textContent = tao(supply.staked);
}

async function loadSubnets() {
  const subnets = await getJson("/subnets");
  renderTable(byId("subnets"), [
    ["netuid", (s) => s.netuid], ["task", (s) => s.task, "text"], ["uids", (s) => s.n],
    ["epoch", (s) => s.epoch_index], ["last epoch at", (s) => s.last_epoch],
    ["pending emission", (s) => tao(s.pending_emission)], ["owner", (s) => short(s.owner, 16), "text"],
  ], subnets);
  const select = byId("netuid");
  const wanted = currentNetuid ?? (subnets.find((s) => s.task !== "root") ?? subnets[0])?.netuid;
  select.replaceChildren(...subnets.map((s) => new Option(`${s.netuid} (${s.task})`, String(s.netuid))));
  if (wanted !== undefined) {
    select.value = String(wanted);
    if (currentNetuid === null) selectSubnet(wanted);
  }
}

function refreshSubnetCharts(stamp) {
  if (currentNetuid === null) return;
  byId("incentive-chart").src = `/charts/incentive/${currentNetuid}?at=${stamp}`;
  byId("emission-chart").src = `/charts/emission/${currentNetuid}?at=${stamp}`;
}

async function loadMetagraph() {
  if (currentNetuid === null) return;
  const rows = await getJson(`/metagraph/${currentNetuid}`);
  renderTable(byId("metagraph"), [
    ["uid", (r) => r.uid], ["hotkey", (r) => short(r.hotkey, 18), "text"], ["stake", (r) => tao(r.stake)],
    ["permit", (r) => (r.validator_permit ? "yes" : "")], ["consensus", (r) => r.consensus.toFixed(4)],
    ["incentive", (r) => r.incentive.toFixed(4)], ["dividends", (r) => r.dividends.toFixed(4)],
    ["emission", (r) => tao(r.emission)], ["model", (r) => r.model, "text"],
  ], rows, (line, row) => {
    line.dataset.uid = String(row.uid);
    line.addEventListener("click", () => showUid(row.uid));
  });
}

function scalar(key, value) {
  if (typeof value === "number" && key.endsWith("_rao")) return tao(value);
  if (typeof value === "boolean") return value ? "yes" : "no";
  return value;
}

// A uid's receipt: how it was paid in the latest kept epoch, checked against the chain's commitment.
function renderUid(detail, view) {
  const title = cell("h3", `uid ${view.uid} on subnet ${view.netuid}` +
    (view.epoch !== undefined ? `, epoch ${view.epoch} (block ${view.block})` : ""));
  const parts = [title];
  if (view.explanation_unavailable) parts.push(cell("p", view.explanation_unavailable));
  const fields = Object.entries(view).filter(([, v]) => v === null || typeof v !== "object");
  const facts = document.createElement("table");
  facts.className = "facts";
  renderTable(facts, [["field", ([k]) => k, "text"], ["value", ([k, v]) => scalar(k, v)]], fields);
  parts.push(facts);
  if (Array.isArray(view.checks)) {
    const checks = document.createElement("ul");
    checks.className = "checks";
    view.checks.forEach((c) => {
      const line = cell("li", `${c.ok ? "✓" : "✗"} ${c.name}${c.detail ? ": " + c.detail : ""}`);
      line.className = c.ok ? "ok" : "failed";
      checks.appendChild(line);
    });
    parts.push(cell("h4", "receipt checks"), checks);
  }
  if (Array.isArray(view.validators) && view.validators.length) {
    const columns = Object.keys(view.validators[0]).filter((k) => typeof view.validators[0][k] !== "object");
    const validators = document.createElement("table");
    renderTable(validators, columns.map((k) => [k, (row) => scalar(k, row[k]), k === "hotkey" ? "text" : undefined]),
      view.validators);
    parts.push(cell("h4", "per validator"), validators);
  }
  const raw = document.createElement("details");
  raw.appendChild(cell("summary", "everything (JSON)"));
  raw.appendChild(cell("pre", JSON.stringify(view, null, 2)));
  parts.push(raw);
  detail.replaceChildren(...parts);
}

async function showUid(uid) {
  const detail = byId("uid-detail");
  detail.hidden = false;
  try {
    renderUid(detail, await getJson(`/explain/${currentNetuid}/${uid}?verify=1`));
  } catch (error) {
    detail.replaceChildren(cell("p", String(error)));
  }
}

function selectSubnet(netuid) {
  currentNetuid = Number(netuid);
  refreshSubnetCharts(Date.now());
  loadMetagraph().catch(console.error);
}

async function loadProposals() {
  const proposals = await getJson("/proposals");
  renderTable(byId("proposals"), [
    ["id", (p) => p.id], ["status", (p) => p.status, "text"],
    ["action", (p) => (p.param ? `${p.action} ${p.param} = ${p.value}` : p.action), "text"],
    ["yes", (p) => tao(p.yes ?? 0)], ["no", (p) => tao(p.no ?? 0)], ["ends at", (p) => p.end],
  ], proposals);
}

async function loadPeers() {
  const peers = await getJson("/peers");
  renderTable(byId("peers"), [
    ["peer", (p) => short(p.peer_id, 24), "text"], ["score", (p) => p.score], ["faults", (p) => p.fault_points],
    ["banned", (p) => (p.banned ? "yes" : "")],
  ], peers);
}

function logEvent(kind, data) {
  const list = byId("events");
  const line = cell("li", `${new Date().toLocaleTimeString()}  ${kind}  ${JSON.stringify(data)}`);
  line.className = `event-${kind}`;
  list.prepend(line);
  while (list.children.length > MAX_EVENTS_SHOWN) list.lastElementChild.remove();
}

// At most one call of `action` per `ms`; the last request in a burst is never lost.
function throttle(action, ms) {
  let timer = null;
  let pending = false;
  return () => {
    if (timer !== null) {
      pending = true;
      return;
    }
    action();
    timer = setTimeout(() => {
      timer = null;
      if (pending) {
        pending = false;
        action();
      }
    }, ms);
  };
}

const refreshStatus = throttle(() => {
  loadStatus().catch(console.error);
  loadSupply().catch(console.error);
}, 1000);
const refreshPeers = throttle(() => loadPeers().catch(console.error), 5000);

function follow() {
  const source = new EventSource("/events");
  const live = byId("live");
  let opened = false;
  source.onopen = () => {
    live.textContent = "live";
    live.className = "online";
    // After a reconnection (the node restarted, say) everything shown may be stale: load it again.
    if (opened) loadAll();
    opened = true;
  };
  source.onerror = () => {
    live.textContent = "reconnecting…";
    live.className = "offline";
  };
  source.addEventListener("head", (message) => {
    const head = JSON.parse(message.data);
    byId("head-height").textContent = head.height;
    refreshStatus();
    refreshPeers();
    if (head.height >= lastChartHeight + 4) {
      lastChartHeight = head.height;
      byId("finality-chart").src = `/charts/finality.svg?at=${head.height}`;
    }
  });
  source.addEventListener("finalized", (message) => {
    logEvent("finalized", JSON.parse(message.data));
    refreshStatus();
  });
  source.addEventListener("epoch", (message) => {
    const epoch = JSON.parse(message.data);
    logEvent("epoch", epoch);
    loadSubnets().catch(console.error);
    if (epoch.netuid === currentNetuid) {
      refreshSubnetCharts(epoch.height);
      loadMetagraph().catch(console.error);
    }
  });
  source.addEventListener("proposal", (message) => {
    logEvent("proposal", JSON.parse(message.data));
    loadProposals().catch(console.error);
  });
  for (const kind of ["tx_included", "tx_refused"]) {
    source.addEventListener(kind, (message) => logEvent(kind, JSON.parse(message.data)));
  }
  source.addEventListener("dropped", () => source.close());
}

byId("netuid").addEventListener("change", (event) => selectSubnet(event.target.value));
function loadAll() {
  Promise.all([loadStatus(), loadSupply(), loadSubnets(), loadProposals(), loadPeers()]).catch(console.error);
  loadMetagraph().catch(console.error);
  refreshSubnetCharts(Date.now());
  byId("finality-chart").src = `/charts/finality.svg?at=${Date.now()}`;
}

loadAll();
follow();

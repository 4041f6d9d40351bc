// The dashboard reads the node's JSON API. Everything it shows comes from the network (a miner
// chooses its model name), so it is written with textContent only, never parsed as HTML.
"use strict";

const METAGRAPH_COLUMNS = ["uid", "stake", "validator_permit", "consensus", "incentive", "dividends", "emission", "model"];

function cell(tag, text) {
  const element = document.createElement(tag);
  element.textContent = String(text);
  return element;
}

function renderTable(table, columns, rows) {
  const header = document.createElement("tr");
  columns.forEach((name) => header.appendChild(cell("th", name)));
  const lines = rows.map((row) => {
    const line = document.createElement("tr");
    columns.forEach((name) => line.appendChild(cell("td", row[name])));
    return line;
  });
  table.replaceChildren(header, ...lines);
}

async function refresh() {
  const status = await (await fetch("/status")).json();
  document.getElementById("status").textContent =
    `chain ${status.chain_id}  height ${status.head_height}  finalized ${status.finalized_height}  ` +
    `peers ${status.peers}  mempool ${status.mempool}`;
  const reply = await fetch("/metagraph/1");
  if (reply.ok) {
    renderTable(document.getElementById("metagraph"), METAGRAPH_COLUMNS, await reply.json());
  }
}

refresh();
setInterval(refresh, 2000);

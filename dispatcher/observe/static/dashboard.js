// The dashboard: one EventSource; the server sends the charts' history once, then a
// snapshot (and the last second's rates) every second. No framework, no outside request.
"use strict";

const HISTORY = 300;
const COLORS = ["#2463eb", "#2e9d57", "#8e44ad", "#c77800", "#16a3b8", "#d35400", "#7f8c8d", "#b03a2e"];
const SVG = "http://www.w3.org/2000/svg";
let points = [];

const $ = (id) => document.getElementById(id);
const text = (id, value) => { $(id).textContent = value; };
const fmt = (v, digits = 1) => (v === null || v === undefined ? "–" : Number(v).toFixed(digits));
const ms = (v) => (v === null || v === undefined ? "–" : `${Math.round(v)} ms`);

function el(tag, attrs = {}, children = []) {
  const node = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "text") node.textContent = value;
    else node.setAttribute(name, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function connect() {
  const source = new EventSource("/dashboard/events");
  source.addEventListener("history", (e) => { points = JSON.parse(e.data).history || []; drawCharts(); });
  source.addEventListener("snapshot", (e) => show(JSON.parse(e.data)));
  source.onerror = () => {
    text("state", "disconnected; retrying…");
    if (source.readyState === EventSource.CLOSED) { setTimeout(connect, 2000); }
  };
}

function show(message) {
  if (message.error) { text("state", message.error); return; }
  const s = message.snapshot;
  if (message.point) { points.push(message.point); points = points.slice(-HISTORY); }
  const alive = s.schedulers.filter((x) => x.alive).length;
  text("state", `${new Date(s.atMs).toLocaleTimeString()} · ${alive} scheduler(s) · ${s.partitionCount} partitions`);
  showCards(s, message.point);
  drawCharts();
  showPools(s.pools);
  showPartitions(s);
  showFailures(s.failures);
}

function showCards(s, point) {
  const t = s.totals;
  text("rate", point ? fmt(point.startedPerS) : "–");
  text("created-rate", point ? fmt(point.createdPerS) : "–");
  text("failed-rate", point ? fmt(point.failedPerS) : "–");
  const last = [...points].reverse().find((p) => p.p50Ms !== null);
  text("p50", last ? ms(last.p50Ms) : "–");
  text("p90", last ? ms(last.p90Ms) : "–");
  text("p99", last ? ms(last.p99Ms) : "–");
  text("running", t.jobsByPhase.running || 0);
  text("created-total", t.jobsCreated);
  text("started-total", t.jobsStarted);
  const reasons = Object.entries(t.pendingByReason);
  text("pending", reasons.reduce((n, [, v]) => n + v, 0));
  $("pending-reasons").replaceChildren(
    ...reasons.map(([name, n]) => el("li", {}, [el("span", { text: name.replaceAll("_", " ") }), el("b", { text: n })])));
}

function drawCharts() {
  drawLines($("rate-chart"), [["rate", points.map((p) => p.startedPerS)]]);
  drawLines($("latency-chart"), [
    ["p50", points.map((p) => p.p50Ms)], ["p90", points.map((p) => p.p90Ms)], ["p99", points.map((p) => p.p99Ms)],
  ]);
}

function drawLines(svg, series) {
  const width = 600, height = 140, top = 14;
  const values = series.flatMap(([, v]) => v).filter((v) => v !== null);
  const max = Math.max(1, ...values) * 1.1;
  const span = Math.max(points.length - 1, 59); // the first minute spreads over the width
  const x = (i) => width - (points.length - 1 - i) * (width / span);
  const y = (v) => height - (v / max) * (height - top);
  const children = [el("svg:line", { class: "axis", x1: 0, x2: width, y1: height - 0.5, y2: height - 0.5 }),
    el("svg:text", { x: 4, y: 11, text: fmt(max, max < 10 ? 1 : 0) })];
  for (const [name, data] of series) {
    const coords = data.map((v, i) => (v === null ? null : `${x(i).toFixed(1)},${y(v).toFixed(1)}`)).filter(Boolean);
    if (!coords.length) continue;
    children.push(el("svg:polyline", { class: name, points: coords.join(" ") }));
    const [cx, cy] = coords[coords.length - 1].split(",");
    children.push(el("svg:circle", { class: `dot ${name}`, cx, cy, r: 3 }));
  }
  svg.replaceChildren(...children);
}

function bar(used, capacity) {
  const fill = el("span");
  fill.style.width = `${capacity ? Math.min(100, (100 * used) / capacity) : 0}%`;
  return el("div", { class: used >= capacity && capacity ? "bar full" : "bar" }, [fill]);
}

function showPools(pools) {
  if (!pools.length) return;
  $("pools").replaceChildren(...pools.map((pool) => {
    const counted = pool.partial ? ` (of the ${pool.servers.length} shown)` : "";
    const title = el("h3", {}, [el("span", { text: pool.agentName || "(automatic)" }),
      el("span", { class: "muted", text: `${pool.jobType} · ${pool.serversLive} server(s) · ` }),
      el("span", { class: "pool-fill", text: `${pool.used} / ${pool.capacity} slots${counted}` })]);
    const servers = pool.servers.map((s) => el("div", { class: `server ${s.status}`, title: s.host }, [
      el("div", { text: `${s.id} · ${s.used}/${s.capacity} · ${s.status}${s.version ? " · v" + s.version : ""}` }),
      bar(s.used, s.capacity)]));
    return el("div", { class: "pool" }, [title, bar(pool.used, pool.capacity), el("div", { class: "servers" }, servers)]);
  }));
}

function showPartitions(s) {
  const owners = s.schedulers.map((x) => x.nodeId);
  const color = (owner) => COLORS[owners.indexOf(owner) % COLORS.length];
  $("schedulers").replaceChildren(...s.schedulers.map((x) => {
    const swatch = el("i"); swatch.style.background = color(x.nodeId);
    return el("li", {}, [swatch, `${x.nodeId}${x.alive ? "" : " (gone)"}: ${x.partitions.length}`]);
  }));
  $("partitions").replaceChildren(...s.partitions.map((p) => {
    const cls = ["cell", p.owner ? "" : "unowned", p.lag ? "lagging" : ""].join(" ").trim();
    const cell = el("div", { class: cls, title: `p${p.partition}: ${p.owner || "no owner"}, ${p.pending} unacked`,
      text: `p${String(p.partition).padStart(2, "0")} ${p.lag === null ? "?" : p.lag}` });
    if (p.owner) cell.style.background = color(p.owner);
    return cell;
  }));
}

function showFailures(failures) {
  $("failures").tBodies[0].replaceChildren(...failures.map((f) => el("tr", {}, [
    el("td", { text: new Date(f.atMs).toLocaleTimeString() }), el("td", { text: f.room }),
    el("td", { text: f.agentName }), el("td", { text: f.serverId || "–" }),
    el("td", { text: f.reason }), el("td", { text: f.error })])));
}

connect();

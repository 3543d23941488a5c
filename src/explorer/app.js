// The log explorer: pages for the log, entries, search, models and lineage
// traces, each proof checked in the page with the reader's pinned key.
"use strict";

import * as v from "./verify.js";

const KEY_STORE = "modeltrail.vkey";
const SEEN_STORE = "modeltrail.checkpoint";
const PAGE = 20;
const main = document.getElementById("main");

// -- DOM helpers: text only, never HTML from the server --------------------

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, val] of Object.entries(attrs)) {
    if (k === "class") e.className = val;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), val);
    else e.setAttribute(k, val);
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

const link = (href, text) => el("a", { href }, text);

function verdict(ok, text) {
  return el("span", { class: ok ? "verdict ok" : "verdict fail", "data-verdict": ok ? "ok" : "fail" },
    ok ? "\u2714 " : "\u2718 ", text);
}

function problem(text) {
  return el("p", { class: "problem", role: "alert", "data-verdict": "fail" }, text);
}

function loading(what) {
  return el("p", { class: "loading" }, `Loading ${what}\u2026`);
}

function show(...nodes) {
  main.replaceChildren(...nodes.flat(Infinity).filter((n) => n !== null && n !== undefined));
}

// -- the server: answers read as text, JSON parsed from it ----------------

class HttpError extends Error {}

async function get(path) {
  let r;
  try {
    r = await fetch(path, { headers: { accept: "application/json" } });
  } catch (e) {
    throw new HttpError(`the server cannot be reached (${e.message})`);
  }
  const text = await r.text();
  if (!r.ok) {
    let msg = `${r.status}`;
    try { msg = `${r.status} ${JSON.parse(text).error.message}`; } catch (_) { /* not JSON */ }
    throw new HttpError(msg);
  }
  return text;
}

const getJson = async (path) => JSON.parse(await get(path));

// -- the pinned key and the monitor ---------------------------------------

async function pinnedKey() {
  const text = localStorage.getItem(KEY_STORE);
  if (!text) return null;
  return v.parseVerifierKey(text);
}

// The latest checkpoint, verified, and checked to extend the last one this
// browser verified (kept in local storage): the tab is a monitor.
async function verifiedHead(key) {
  const cp = await v.verifyCheckpoint(await get("/checkpoint"), key);
  const seen = JSON.parse(localStorage.getItem(SEEN_STORE) || "null");
  let monitor = "first checkpoint seen by this browser";
  if (seen && seen.key === key.text) {
    if (cp.size < seen.size) {
      throw new v.VerifyError(`the log went backwards: size ${cp.size} after ${seen.size}`);
    }
    const oldRoot = v.b64decode(seen.root, "the remembered root");
    let proof = [];
    if (seen.size > 0 && seen.size < cp.size) {
      const p = await getJson(`/v1/proof/consistency?old_size=${seen.size}&new_size=${cp.size}`);
      proof = p.proof.map((h) => v.unhex(h, "a consistency proof hash"));
    }
    await v.verifyConsistency(seen.size, cp.size, oldRoot, cp.root, proof);
    monitor = `consistent with the checkpoint of size ${seen.size} this browser verified before`;
  }
  localStorage.setItem(SEEN_STORE, JSON.stringify({
    key: key.text, size: cp.size, root: btoa(String.fromCharCode(...cp.root)),
  }));
  return { cp, monitor };
}

// An entry, verified: its exact event bytes hash to a leaf that is
// included in the verified checkpoint.
async function verifyEntry(index, rawEvent, cp, proofHex) {
  const leaf = await v.leafHash(v.utf8(rawEvent));
  let proof = proofHex;
  if (!proof) {
    const p = await getJson(`/v1/proof/inclusion?index=${index}&tree_size=${cp.size}`);
    proof = p.proof;
  }
  await v.verifyInclusion(index, cp.size, leaf, proof.map((h) => v.unhex(h, "a proof hash")), cp.root);
  return v.hex(leaf);
}

// -- pages -----------------------------------------------------------------

function keyForm(current) {
  const input = el("textarea", { id: "vkey", rows: "2", spellcheck: "false",
    placeholder: "origin+abcd1234+AQ..." }, current || "");
  const form = el("form", {
    id: "pin",
    onsubmit: async (e) => {
      e.preventDefault();
      try {
        await v.parseVerifierKey(input.value);
        localStorage.setItem(KEY_STORE, input.value.trim());
        localStorage.removeItem(SEEN_STORE);
        route();
      } catch (err) {
        form.append(problem(`Not a usable key: ${err.message}`));
      }
    },
  }, el("label", { for: "vkey" }, "The log's verifier key (from a source you trust, not from this server):"),
  input, el("button", { type: "submit" }, "Pin this key"));
  return form;
}

async function logPage(params) {
  const key = await pinnedKey();
  if (!key) {
    show(el("h1", {}, "Pin the log's key"),
      el("p", {}, "Every proof on these pages is checked in your browser against a key you give. " +
        "Paste the log's verifier key (its operator hands it out; the server keeps it in log.vkey)."),
      keyForm(""));
    return;
  }
  show(el("h1", {}, "The log"), loading("the checkpoint"));
  const { cp, monitor } = await verifiedHead(key);
  const start = Math.max(0, Number(params.get("start") ?? Math.max(0, cp.size - PAGE)));
  const box = el("section", { id: "head" },
    el("dl", {},
      el("dt", {}, "Origin"), el("dd", {}, cp.origin),
      el("dt", {}, "Tree size"), el("dd", { id: "size" }, String(cp.size)),
      el("dt", {}, "Root hash"), el("dd", { class: "hash" }, v.hex(cp.root)),
      el("dt", {}, "Signature"), el("dd", {}, verdict(true, `signed by the pinned key ${key.name}`)),
      el("dt", {}, "Monitor"), el("dd", {}, verdict(true, monitor)),
      el("dt", {}, "Witnesses"), el("dd", {}, cp.cosigners.length
        ? `cosigned by ${cp.cosigners.join(", ")} (not checked here: their keys are not pinned)`
        : "no cosignatures")),
    el("details", {}, el("summary", {}, "Checkpoint"), el("pre", {}, cp.note)),
    el("p", {}, el("button", { type: "button", onclick: () => { localStorage.removeItem(KEY_STORE); route(); } },
      "Change the pinned key")));
  const list = el("section", { id: "entries" }, el("h2", {}, "Entries"), loading("entries"));
  show(el("h1", {}, "The log"), box, list);
  const end = Math.min(cp.size, start + PAGE);
  if (start >= end) {
    list.replaceChildren(el("h2", {}, "Entries"), el("p", {}, "No entries here."));
    return;
  }
  const page = v.rawMembers(await get(`/v1/entries?start=${start}&limit=${end - start}`));
  const rows = [];
  for (const raw of v.rawItems(page.get("entries"))) {
    const m = v.rawMembers(raw);
    const index = Number(m.get("index"));
    rows.push(await entryRow(index, m.get("event"), cp));
  }
  const nav = el("p", { class: "nav" },
    start > 0 ? link(`#/?start=${Math.max(0, start - PAGE)}`, "\u2190 older") : null, " ",
    end < cp.size ? link(`#/?start=${end}`, "newer \u2192") : null);
  list.replaceChildren(el("h2", {}, `Entries ${start}\u2013${end - 1}`),
    el("table", {}, el("thead", {}, el("tr", {}, ["#", "action", "subject", "actor", "time", "proof"].map((h) => el("th", {}, h)))),
      el("tbody", {}, rows)), nav);
}

async function entryRow(index, rawEvent, cp, proof) {
  const e = JSON.parse(rawEvent);
  let mark;
  try {
    await verifyEntry(index, rawEvent, cp, proof);
    mark = verdict(true, "included");
  } catch (err) {
    mark = verdict(false, err.message);
  }
  return el("tr", {},
    el("td", {}, link(`#/entry/${index}`, String(index))),
    el("td", {}, e.action),
    el("td", {}, subjectLink(e.subject)),
    el("td", {}, `${e.actor.type}:${e.actor.id}`),
    el("td", {}, e.timestamp),
    el("td", {}, mark));
}

function subjectLink(ref) {
  const text = `${ref.type}:${ref.id}`;
  if (ref.type === "model_version") {
    const i = ref.id.lastIndexOf(":");
    if (i > 0) return link(`#/model/${encodeURIComponent(ref.id.slice(0, i))}`, text);
  }
  return link(`#/trace/${encodeURIComponent(ref.type)}/${encodeURIComponent(ref.id)}`, text);
}

async function requireKey() {
  const key = await pinnedKey();
  if (!key) {
    location.hash = "#/";
    throw new v.VerifyError("pin the log's key first");
  }
  return key;
}

async function entryPage(index) {
  const key = await requireKey();
  show(el("h1", {}, `Entry ${index}`), loading("the entry"));
  const { cp } = await verifiedHead(key);
  const m = v.rawMembers(await get(`/v1/entries/${index}`));
  const raw = m.get("event");
  const p = await getJson(`/v1/proof/inclusion?index=${index}&tree_size=${cp.size}`);
  const leaf = v.hex(await v.leafHash(v.utf8(raw)));
  let mark;
  try {
    await verifyEntry(index, raw, cp, p.proof);
    mark = verdict(true, `included in the signed tree of size ${cp.size}`);
  } catch (err) {
    mark = verdict(false, err.message);
  }
  show(el("h1", {}, `Entry ${index}`), el("p", { id: "entry-verdict" }, mark),
    el("pre", { class: "event" }, JSON.stringify(JSON.parse(raw), null, 2)),
    el("h2", {}, "Proof"),
    el("dl", {}, el("dt", {}, "Leaf hash (computed here)"), el("dd", { class: "hash" }, leaf),
      el("dt", {}, "Inclusion proof"), el("dd", {}, el("ol", {}, p.proof.map((h) => el("li", { class: "hash" }, h))))));
}

async function searchPage(params) {
  const key = await requireKey();
  const fields = ["type", "id", "actor", "action", "since", "until"];
  const form = el("form", { id: "search", onsubmit: (e) => {
    e.preventDefault();
    const q = new URLSearchParams();
    for (const f of fields) {
      const val = form.elements[f].value.trim();
      if (val) q.set(f, val);
    }
    location.hash = `#/search?${q}`;
  } }, fields.map((f) => el("label", {}, f, el("input", { name: f, value: params.get(f) || "" }))),
  el("button", { type: "submit" }, "Search"));
  const results = el("section", { id: "results" });
  show(el("h1", {}, "Search"), form, results);
  const q = fields.filter((f) => params.get(f)).map((f) => `${f}=${params.get(f)}`);
  if (!q.length) return;
  if (params.get("start")) q.push(`start=${params.get("start")}`);
  results.replaceChildren(loading("results"));
  const { cp } = await verifiedHead(key);
  const page = v.rawMembers(await get(`/v1/search?${q.join("&")}&limit=${PAGE}`));
  const rows = [];
  for (const raw of v.rawItems(page.get("entries"))) {
    const m = v.rawMembers(raw);
    const index = Number(m.get("index"));
    if (index < cp.size) rows.push(await entryRow(index, m.get("event"), cp));
  }
  const next = JSON.parse(page.get("next_start"));
  const more = new URLSearchParams(params);
  if (next !== null) more.set("start", String(next));
  results.replaceChildren(rows.length
    ? el("table", {}, el("tbody", {}, rows))
    : el("p", {}, "Nothing found."),
  next !== null ? el("p", {}, link(`#/search?${more}`, "more \u2192")) : null);
}

async function modelPage(name) {
  const key = await requireKey();
  show(el("h1", {}, `Model ${name}`), loading("the model"));
  const m = await getJson(`/v1/models/${encodeURIComponent(name)}`);
  const sections = [];
  for (const ver of m.versions) {
    sections.push(await versionSection(name, ver, key));
  }
  show(el("h1", {}, `Model ${name}`),
    el("p", {}, `In production: ${m.production || "none"}`), sections);
}

async function versionSection(name, ver, key) {
  const path = `/v1/models/${encodeURIComponent(name)}/versions/${encodeURIComponent(ver.version)}?proofs=true`;
  const state = await getJson(path);
  let mark;
  try {
    const cp = await v.verifyCheckpoint(state.checkpoint, key);
    const entries = await Promise.all(state.proofs.map(async (p) => {
      const raw = v.rawMembers(await get(`/v1/entries/${p.index}`)).get("event");
      await verifyEntry(p.index, raw, cp, p.inclusion_proof);
    }));
    mark = verdict(true, `${entries.length} events, each included in the signed tree of size ${cp.size}`);
  } catch (err) {
    mark = verdict(false, err.message);
  }
  const marks = (label, list, fmt) => list.length
    ? el("li", {}, `${label}: `, list.map((x, i) => [i ? ", " : "", fmt(x)]))
    : null;
  const at = (x) => link(`#/entry/${x.index}`, `${x.by} (#${x.index})`);
  return el("section", { class: "version", "data-version": ver.version },
    el("h2", {}, `${ver.version} \u2014 ${state.stage}`), el("p", {}, mark),
    el("ul", {},
      el("li", {}, `approval status: ${state.approval_status}`),
      marks("approvals", state.approvals, at),
      marks("rejections", state.rejections, at),
      marks("attestations", state.attestations, (a) => link(`#/entry/${a.index}`,
        `${a.kind} ${a.passed ? "passed" : "failed"} by ${a.by}${a.signed ? " (signed)" : ""}`)),
      marks("stage changes", state.stages, (s) => link(`#/entry/${s.index}`, `${s.action} to ${s.stage} by ${s.by}`)),
      marks("deployments", state.deployments, (d) => link(`#/entry/${d.index}`, `${d.environment} by ${d.by}`)),
      marks("denials", state.denials, (i) => link(`#/entry/${i}`, `#${i}`))),
    el("p", {}, link(`#/trace/model_version/${encodeURIComponent(`${name}:${ver.version}`)}`, "lineage \u2192")));
}

async function tracePage(kind, id) {
  const key = await requireKey();
  show(el("h1", {}, `Lineage of ${kind}:${id}`), loading("the trace"));
  const text = await get(`/v1/trace/${encodeURIComponent(kind)}/${encodeURIComponent(id)}`);
  const m = v.rawMembers(text);
  const bundle = JSON.parse(text);
  const cp = await v.verifyCheckpoint(bundle.checkpoint, key);
  const ok = new Map();
  for (const raw of v.rawItems(m.get("entries"))) {
    const e = v.rawMembers(raw);
    const index = Number(e.get("index"));
    try {
      await verifyEntry(index, e.get("event"), cp, JSON.parse(e.get("inclusion_proof")));
      ok.set(index, true);
    } catch (err) {
      ok.set(index, err.message);
    }
  }
  const nodes = bundle.nodes.map((n) => {
    const bad = n.entries.map((i) => ok.get(i)).find((r) => r !== true);
    return { ...n, ok: bad === undefined, why: bad === undefined ? "" : (bad || "entry missing") };
  });
  const failed = nodes.filter((n) => !n.ok);
  show(el("h1", {}, `Lineage of ${kind}:${id}`),
    el("p", { id: "trace-verdict" }, failed.length
      ? verdict(false, `${failed.length} node(s) failed: ${failed[0].why}`)
      : verdict(true, `${nodes.length} nodes, every entry included in the signed tree of size ${cp.size}`)),
    bundle.served_by ? el("p", {}, `served by ${bundle.served_by.model_version}`) : null,
    graph(nodes), el("ul", { class: "nodes" }, nodes.map((n) => el("li", {},
      verdict(n.ok, `${n.type}:${n.id}`), " ", n.entries.map((i) => [" ", link(`#/entry/${i}`, `#${i}`)])))));
}

// The trace as a graph: one row per node, in the order visited, with its
// links drawn to the nodes they lead to.
function graph(nodes) {
  const ns = "http://www.w3.org/2000/svg";
  const rowH = 44, width = 640;
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${nodes.length * rowH + 10}`);
  svg.setAttribute("class", "graph");
  svg.setAttribute("role", "img");
  const pos = new Map(nodes.map((n, i) => [`${n.type}:${n.id}`, i]));
  const add = (tag, attrs, text) => {
    const e = document.createElementNS(ns, tag);
    for (const [k, val] of Object.entries(attrs)) e.setAttribute(k, val);
    if (text) e.textContent = text;
    svg.append(e);
  };
  nodes.forEach((n, i) => {
    for (const l of n.links) {
      const j = pos.get(`${l.type}:${l.id}`);
      if (j === undefined) continue;
      add("path", { d: `M 30 ${i * rowH + 26} C 8 ${i * rowH + 26}, 8 ${j * rowH + 26}, 30 ${j * rowH + 26}`, class: "edge" });
    }
  });
  nodes.forEach((n, i) => {
    add("rect", { x: 30, y: i * rowH + 8, width: width - 40, height: rowH - 8, rx: 6, class: n.ok ? "node ok" : "node fail" });
    add("text", { x: 42, y: i * rowH + 31 }, `${n.ok ? "\u2714" : "\u2718"} ${n.type}:${n.id}`);
  });
  return svg;
}

// -- routing: links that can be shared --------------------------------------

async function route() {
  const hash = location.hash.replace(/^#/, "") || "/";
  const [path, query] = hash.split("?");
  const params = new URLSearchParams(query || "");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  try {
    if (parts.length === 0) await logPage(params);
    else if (parts[0] === "entry" && /^[0-9]+$/.test(parts[1] || "")) await entryPage(Number(parts[1]));
    else if (parts[0] === "search") await searchPage(params);
    else if (parts[0] === "model" && parts[1]) await modelPage(parts[1]);
    else if (parts[0] === "trace" && parts[1] && parts[2]) await tracePage(parts[1], parts.slice(2).join("/"));
    else show(el("h1", {}, "Not found"), problem(`There is no page ${hash}.`));
  } catch (err) {
    const what = err instanceof v.VerifyError ? "Verification failed" : "Could not load this page";
    main.append(el("h2", {}, what), problem(err.message));
    if (err instanceof v.VerifyError && /signed by the pinned key|does not verify|key/.test(err.message)) {
      main.append(el("p", {}, "If the pinned key is wrong, pin another:"), keyForm(localStorage.getItem(KEY_STORE)));
    }
  }
}

window.addEventListener("hashchange", route);
route();

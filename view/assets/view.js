// comfybatch view: the gallery. No framework, no build step: it polls
// api/jobs with the version it has and redraws only what changed.
"use strict";
(function () {
  const key = new URLSearchParams(location.search).get("key");
  const q = (p) => (key ? p + (p.includes("?") ? "&" : "?") + "key=" + encodeURIComponent(key) : p);
  const $ = (id) => document.getElementById(id);
  let snap = { jobs: [], counts: {}, models: [] };
  let version = "";
  let focus = 0;
  const selected = new Set();
  const cards = new Map(); // id -> element

  function fmtUSD(v) { return v == null ? "?" : "$" + v.toFixed(2); }
  function fmtS(v) { return v == null ? "–" : v < 60 ? v.toFixed(1) + "s" : (v / 60).toFixed(1) + "m"; }
  function esc(s) { return String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c])); }
  function fileURL(p) { return q("files/" + p.split("/").map(encodeURIComponent).join("/")); }

  async function poll() {
    try {
      const r = await fetch(q("api/jobs?since=" + encodeURIComponent(version)), { cache: "no-store" });
      if (r.ok) {
        const s = await r.json();
        if (!s.unchanged) { snap = s; version = s.version; render(); }
      }
    } catch (e) { /* the server may be restarting: try again */ }
    setTimeout(poll, 1000);
  }

  function visible() {
    const st = $("f-state").value, m = $("f-model").value, rv = $("f-review").value;
    const t = $("f-text").value.toLowerCase();
    let out = snap.jobs.filter((j) =>
      (!st || j.state === st) && (!m || j.model === m) &&
      (!rv || (rv === "none" ? !j.review : j.review === rv)) &&
      (!t || (j.id + " " + j.prompt + " " + (j.error || "") + " " + (j.note || "")).toLowerCase().includes(t)));
    const by = $("sort").value;
    const cmp = {
      id: (a, b) => a.id.localeCompare(b.id),
      state: (a, b) => a.state.localeCompare(b.state) || a.id.localeCompare(b.id),
      cost: (a, b) => (b.cost_usd || 0) - (a.cost_usd || 0),
      ran: (a, b) => (b.ran_s || 0) - (a.ran_s || 0),
    }[by];
    if (cmp) out = out.slice().sort(cmp);
    return out;
  }

  function fillSelect(sel, values) {
    const have = new Set([...sel.options].map((o) => o.value));
    for (const v of values) if (!have.has(v)) sel.add(new Option(v, v));
  }

  function header() {
    $("title").textContent = "comfybatch · " + (snap.title || "");
    $("counts").innerHTML = Object.keys(snap.counts).sort().map((s) =>
      `<span class="count" data-state="${esc(s)}">${esc(s)} <b>${snap.counts[s]}</b></span>`).join("");
    $("money").textContent = "spent " + fmtUSD(snap.spent_usd) + " · est. total " + fmtUSD(snap.est_total_usd);
    fillSelect($("f-state"), Object.keys(snap.counts).sort());
    fillSelect($("f-model"), snap.models || []);
  }

  function media(j) {
    if (!j.file) return `<div class="media-empty">${esc(j.state)}</div>`;
    const u = fileURL(j.file);
    if (j.kind === "video") return `<video src="${u}" controls loop muted preload="auto" playsinline></video>`;
    if (j.kind === "image") return `<img src="${u}" alt="${esc(j.id)}">`;
    if (j.kind === "audio") return `<audio src="${u}" controls preload="metadata"></audio>`;
    return `<div class="media-empty"><a href="${u}">${esc(j.file)}</a></div>`;
  }

  function body(j) {
    const vary = Object.entries(j.vary || {}).map(([k, v]) => esc(k) + "=" + esc(typeof v === "string" ? v : JSON.stringify(v))).join(" · ");
    return `<div class="id">${esc(j.id)} <span class="state ${esc(j.state)}">${esc(j.state)}</span></div>
      <div class="prompt" title="click for the full prompt">${esc(j.prompt)}</div>
      <div class="vary">${vary}</div>
      <div class="times">cost ${fmtUSD(j.cost_usd)} · queued ${fmtS(j.queued_s)} · ran ${fmtS(j.ran_s)}</div>
      ${j.error ? `<div class="error">${esc(j.error)}</div>` : ""}
      <div class="actions"><input type="checkbox" class="sel" aria-label="select">
        <button type="button" class="acc">accept</button><button type="button" class="rej">reject</button>
        <button type="button" class="det">details</button>
        <span class="verdict">${j.review ? esc(j.review) : ""}</span></div>
      ${j.note ? `<div class="note">${esc(j.note)}</div>` : ""}`;
  }

  function render() {
    header();
    const grid = $("grid");
    const list = visible();
    const keep = new Set(list.map((j) => j.id));
    for (const [id, el] of cards) if (!keep.has(id)) { el.remove(); cards.delete(id); }
    list.forEach((j, i) => {
      let el = cards.get(j.id);
      const sig = [j.state, j.file, j.review, j.note, j.cost_usd, j.ran_s, j.error].join("|");
      if (!el) {
        el = document.createElement("article");
        el.className = "card";
        el.dataset.id = j.id;
        el.innerHTML = `<div class="media"></div><div class="body"></div>`;
        cards.set(j.id, el);
      }
      if (el.dataset.media !== (j.file || "") + j.state) {
        // The player is made again only when the file changes, so that a
        // poll never restarts a clip someone is watching.
        el.querySelector(".media").innerHTML = media(j);
        el.dataset.media = (j.file || "") + j.state;
      }
      if (el.dataset.sig !== sig) { el.querySelector(".body").innerHTML = body(j); el.dataset.sig = sig; }
      el.dataset.state = j.state;
      el.classList.toggle("accepted", j.review === "accepted");
      el.classList.toggle("rejected", j.review === "rejected");
      el.classList.toggle("selected", selected.has(j.id));
      el.querySelector(".sel").checked = selected.has(j.id);
      el.classList.toggle("focus", i === focus);
      if (grid.children[i] !== el) grid.insertBefore(el, grid.children[i] || null);
    });
    if (focus >= list.length) focus = Math.max(0, list.length - 1);
  }

  async function review(ids, verdict) {
    if (!ids.length) return;
    const r = await fetch(q("api/review"), {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ ids, verdict, note: $("note").value }),
    });
    if (!r.ok) { alert(await r.text()); return; }
    version = ""; // read again now
    const s = await (await fetch(q("api/jobs"), { cache: "no-store" })).json();
    snap = s; version = s.version; render();
  }

  async function details(id) {
    const d = await (await fetch(q("api/job?id=" + encodeURIComponent(id)))).json();
    const files = (d.files || []).map((f) => `<tr><td><a href="${fileURL(f.path)}">${esc(f.path)}</a></td><td>${f.bytes}</td><td><code>${esc(f.sha256)}</code></td></tr>`).join("");
    const evs = (d.events || []).map((e) => `<tr><td>${esc(e.at)}</td><td>${esc(e.from)} → ${esc(e.to)}</td><td>${esc(e.detail || "")}</td></tr>`).join("");
    $("details-body").innerHTML = `<h2>${esc(d.ID)}</h2><p>request ${esc(d.RequestID || "–")} · ${esc(d.State)} · ${esc(d.Model)}</p>
      <h3>input</h3><pre>${esc(JSON.stringify(d.Input, null, 2))}</pre>
      <h3>files</h3><table><tr><th>path</th><th>bytes</th><th>sha256</th></tr>${files}</table>
      <h3>events</h3><table>${evs}</table>`;
    $("details").showModal();
  }

  function focused() { const l = visible(); return l[focus] && l[focus].id; }
  function move(d) {
    const n = visible().length;
    if (!n) return;
    focus = Math.min(n - 1, Math.max(0, focus + d));
    render();
    const el = cards.get(focused());
    if (el) el.scrollIntoView({ block: "nearest" });
  }

  document.addEventListener("keydown", (e) => {
    if (e.target.matches("input[type=text],input[type=search],select") || e.ctrlKey || e.metaKey || e.altKey) return;
    if ($("details").open) { if (e.key === "Escape") $("details").close(); return; }
    const id = focused();
    switch (e.key) {
      case "ArrowRight": case "j": move(1); break;
      case "ArrowLeft": case "k": move(-1); break;
      case "a": if (id) review(selected.size ? [...selected] : [id], "accepted"); break;
      case "r": if (id) review(selected.size ? [...selected] : [id], "rejected"); break;
      case "x": if (id) { selected.has(id) ? selected.delete(id) : selected.add(id); render(); } break;
      case "Enter": if (id) details(id); break;
      default: return;
    }
    e.preventDefault();
  });
  $("grid").addEventListener("click", (e) => {
    const card = e.target.closest(".card");
    if (!card) return;
    const id = card.dataset.id;
    const l = visible();
    focus = Math.max(0, l.findIndex((j) => j.id === id));
    if (e.target.matches(".acc")) review([id], "accepted");
    else if (e.target.matches(".rej")) review([id], "rejected");
    else if (e.target.matches(".det")) details(id);
    else if (e.target.matches(".sel")) { e.target.checked ? selected.add(id) : selected.delete(id); }
    else if (e.target.matches(".prompt")) e.target.classList.toggle("full");
    render();
  });
  $("acc-sel").onclick = () => review([...selected], "accepted");
  $("rej-sel").onclick = () => review([...selected], "rejected");
  $("close").onclick = () => $("details").close();
  for (const id of ["f-state", "f-model", "f-review", "f-text", "sort"]) $(id).addEventListener("input", () => { focus = 0; render(); });
  poll();
})();

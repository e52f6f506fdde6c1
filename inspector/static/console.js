// The enmon console: plain JavaScript over the inspector API, no build step, no CDN.
// The token lives in sessionStorage (this tab only) and goes in the Authorization header.
// Texts: the page comes rendered in the reader's language (zh-CN unless chosen otherwise);
// this script's own sentences are looked up with _() in the catalog the page carries
// (inspector/locale/*.po, extracted by pybabel), whole sentences with %(name)s placeholders.
"use strict";

const $ = (sel) => document.querySelector(sel);
const LANG = document.documentElement.lang || "zh-CN";
const I18N = JSON.parse(document.getElementById("i18n-catalog").textContent || "{}");
const LABELS = I18N.labels || {};
function _(msg, params = {}) {
  const text = (I18N.messages || {})[msg] || msg;
  return text.replace(/%\((\w+)\)s/g, (m, k) => (k in params ? String(params[k]) : m));
}
function label(kind, code) { return (LABELS[kind] || {})[code] || code; }
// a notification's console link (?site=…&alert=<fingerprint>): that alert is marked in the list
const WANTED_ALERT = new URLSearchParams(location.search).get("alert") || "";
const state = { token: sessionStorage.getItem("enmon-token") || "", who: null, sites: [],
                meter: null, tz: "Asia/Shanghai" };

// Build elements with text set through textContent: nothing a sender or a clerk wrote is
// ever parsed as HTML. el("td", { class: "num" }, "12.5") → <td class="num">12.5</td>
function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== null && v !== undefined) e.setAttribute(k, v);
  for (const c of children) e.append(c instanceof Node ? c : String(c ?? ""));
  return e;
}

// The API's reason for a refusal: a sentence (already in the reader's language), or
// FastAPI's list of field errors
function detailText(detail, fallback) {
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) return detail.map((d) => `${(d.loc || []).slice(1).join(".")}: ${d.msg}`).join("; ");
  return detail ? JSON.stringify(detail) : fallback;
}

async function api(path, opts = {}) {
  const r = await fetch(path, { ...opts, headers: { ...(opts.headers || {}),
    Authorization: "Bearer " + state.token } });
  if (r.status === 401) { signOut(_("Your token was not accepted.")); throw new Error("unauthorized"); }
  if (!r.ok) {
    let detail = r.statusText;
    try { detail = detailText((await r.json()).detail, detail); } catch (e) { /* not JSON */ }
    const err = new Error(detail);
    err.status = r.status;
    throw err;
  }
  return r;
}

function fmtTime(ms) {
  if (ms === null || ms === undefined) return "";
  return new Date(ms).toLocaleString("sv-SE", { timeZone: state.tz }).slice(0, 16);
}
function fmtNum(v) {
  if (v === null || v === undefined) return "";
  const a = Math.abs(v);
  return a >= 100 ? v.toLocaleString(LANG, { maximumFractionDigits: 0 })
       : a >= 1 ? v.toFixed(2) : v.toPrecision(3);
}
function fmtDur(s) {
  const m = Math.round(s / 60), d = Math.floor(m / 1440), h = Math.floor((m % 1440) / 60);
  if (d) return _("%(d)s d %(h)s h %(m)s min", { d, h, m: m % 60 });
  if (h) return _("%(h)s h %(m)s min", { h, m: m % 60 });
  return _("%(m)s min", { m: m % 60 });
}

// ------------------------------------------------------------------ sign in

function signOut(msg) {
  sessionStorage.removeItem("enmon-token");
  state.token = "";
  $("#app").hidden = true; $("#login").hidden = false; $("#logout").hidden = true;
  $("#who").textContent = "";
  $("#login-error").textContent = msg || "";
}

async function signIn() {
  const r = await api("/api/v1/whoami");
  state.who = await r.json();
  sessionStorage.setItem("enmon-token", state.token);
  const role = state.who.role === "facility_manager" ? _("facility manager")
    : state.who.role === "data_clerk" ? _("data clerk") : _("inspector");
  // who may enter readings: the API says so (and refuses with 403 otherwise)
  state.mayEnter = state.who.may_enter === true;
  $("#entry-form").hidden = !state.mayEnter;
  $("#who").textContent = _("%(name)s (%(role)s)", { name: state.who.name, role });
  $("#login").hidden = true; $("#app").hidden = false; $("#logout").hidden = false;
  await loadTree();
  await loadAlerts();
}

$("#login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  state.token = $("#token").value.trim();
  try { await signIn(); } catch (e) { $("#login-error").textContent = _("Sign-in failed: %(error)s", { error: e.message }); }
});
$("#logout").addEventListener("click", () => signOut(""));

// ------------------------------------------------------------------ tree

async function loadTree() {
  state.sites = await (await api("/api/v1/sites")).json();
  const tree = $("#tree");
  tree.replaceChildren();
  $("#report-site").replaceChildren(...state.sites.map((s) => el("option", { value: s.site }, s.name)));
  for (const s of state.sites) {
    const buildings = await (await api(`/api/v1/sites/${encodeURIComponent(s.site)}/buildings`)).json();
    s.tree = buildings;
    const sd = document.createElement("details");
    sd.open = true;
    sd.append(el("summary", {}, s.name));
    for (const b of buildings) {
      const bd = document.createElement("details");
      bd.open = true;
      bd.dataset.building = b.id;
      bd.append(el("summary", {}, b.name),
        el("a", { "data-site": s.site, "data-building": b.id, class: "building-link" }, _("Energy analysis")),
        ...b.meters.map((m) =>
        el("a", { "data-site": s.site, "data-device": m.device, class: "meter-link" }, m.device + " ",
          el("span", { class: "et" }, `${label("energy_types", m.energy_type)} ${label("categories", m.category)}`))));
      sd.appendChild(bd);
    }
    tree.appendChild(sd);
  }
  applyFilter();  // typed while the tree was loading
  tree.dataset.loaded = "1";
  fillReportBuildings();
}

$("#tree").addEventListener("click", (ev) => {
  const bl = ev.target.closest("a.building-link");
  if (bl) {
    document.querySelectorAll("#tree a.selected").forEach((x) => x.classList.remove("selected"));
    bl.classList.add("selected");
    openBuilding(bl.dataset.site, bl.dataset.building);
    return;
  }
  const a = ev.target.closest("a.meter-link");
  if (!a) return;
  document.querySelectorAll("#tree a.selected").forEach((x) => x.classList.remove("selected"));
  a.classList.add("selected");
  openMeter(a.dataset.site, a.dataset.device);
});

function applyFilter() {
  const q = $("#find").value.trim().toLowerCase();
  document.querySelectorAll("#tree a.meter-link").forEach((a) => {
    a.hidden = q !== "" && !a.textContent.toLowerCase().includes(q);
  });
  // a building's energy view stays listed while one of its meters or its name matches
  document.querySelectorAll("#tree a.building-link").forEach((a) => {
    const d = a.closest("details");
    const name = d.querySelector("summary").textContent.toLowerCase();
    a.hidden = q !== "" && !name.includes(q) && !a.dataset.building.toLowerCase().includes(q) &&
      ![...d.querySelectorAll("a.meter-link")].some((m) => !m.hidden);
  });
}
$("#find").addEventListener("input", applyFilter);

// ------------------------------------------------------------------ meter history

function isoDate(ms) {
  return new Date(ms).toLocaleString("sv-SE", { timeZone: state.tz }).slice(0, 10);
}

async function openMeter(site, device) {
  const s = state.sites.find((x) => x.site === site);
  let meter = null;
  for (const b of s.tree) for (const m of b.meters) if (m.device === device) meter = m;
  state.meter = meter;
  $("#bview").hidden = true;
  $("#meter").hidden = false;
  $("#meter-title").textContent = `${device}`;
  $("#meter-meta").textContent = _("%(site)s · building %(building)s · gateway %(gateway)s · " +
    "%(energy)s %(category)s · last reading %(time)s", { site: s.name, building: meter.building,
    gateway: meter.gateway, energy: label("energy_types", meter.energy_type),
    category: meter.category, time: fmtTime(meter.last_seen) });
  // the last seven days up to now: an empty "to" asks the API for a range ending now
  $("#to").value = "";
  $("#from").value = isoDate(Date.now() - 6 * 86400000);
  $("#quantity").replaceChildren();
  $("#entry-msg").textContent = "";
  await loadHistory();
  // a reading taken now, in the site's time (the clerk changes it for an older one)
  $("#entry-time").value = new Date().toLocaleString("sv-SE", { timeZone: state.tz }).slice(0, 16).replace(" ", "T");
}


// start and mode always; end only when typed (otherwise the API ends the range now)
function rangeParams(extra = {}) {
  const p = new URLSearchParams({ start: $("#from").value, mode: $("#mode").value, ...extra });
  if ($("#to").value) p.set("end", $("#to").value);
  return p;
}

async function loadHistory() {
  const m = state.meter;
  const p = rangeParams();
  const chosen = $("#quantity").value;
  if (chosen) p.append("quantity", chosen.replace(/_(mean|min|max|count|consumption)$/, ""));
  $("#summary").textContent = _("loading…");
  let h;
  try {
    h = await (await api(`/api/v1/sites/${encodeURIComponent(m.site)}/meters/` +
      `${encodeURIComponent(m.device)}/history?${p}`)).json();
  } catch (e) { $("#summary").textContent = _("Could not load: %(error)s", { error: e.message }); return; }
  state.tz = h.tz;
  const plottable = h.columns.filter((c) => !c.endsWith("_count") && !c.endsWith("_min") && !c.endsWith("_max"));
  if (!$("#quantity").options.length) {
    $("#quantity").replaceChildren(...plottable.map((c) => el("option", { value: c }, c)));
  }
  const wanted = chosen || (state.focus && plottable.find((c) => c === state.focus || c === state.focus + "_consumption"));
  state.focus = null;
  const col = plottable.includes(wanted) ? wanted : (plottable.find((c) => !c.includes("energy") &&
    !c.includes("volume") && !c.includes("mass")) || plottable[0]);
  $("#quantity").value = col;
  drawChart(h, col);
  $("#summary").textContent = _("%(readings)s readings until %(end)s, expected every %(interval)s " +
    "(gap: silence > %(tolerance)s × that), %(gaps)s gap(s), %(flags)s flagged value(s), " +
    "%(rejected)s rejected record(s)", { readings: h.readings, end: fmtTime(h.end),
    interval: fmtDur(h.interval_s), tolerance: h.gap_tolerance ?? "", gaps: h.gaps.length,
    // doubtful values only: hand-entered ones are listed as entries, not counted as doubtful
    flags: h.flags.filter((f) => !ENTERED.has(f.flag)).length, rejected: h.rejected.length });
  fillTable("#gaps", h.gaps.map((g) => [fmtTime(g.start), fmtTime(g.end), fmtDur(g.duration_s)]));
  fillTable("#flags", h.flags.map((f) => [fmtTime(f.ts), f.quantity, flagText(f.flag), fmtNum(f.value)]));
  fillTable("#rejected", h.rejected.map((r) => [fmtTime(r.time), r.reason, r.detail]));
  fillEntries(h.entries || []);
}

const ENTRY_KIND = () => ({ reading: _("manual reading (entry kind)"), correction: _("corrected reading") });

// the meter's manual readings and corrections, oldest entry first: who, when, why, and the
// value a correction replaced (the original stays in the audit trail)
function fillEntries(entries) {
  const body = $("#entries tbody");
  body.replaceChildren();
  if (!entries.length) {
    body.append(el("tr", {}, el("td", { class: "muted", colspan: "7" }, _("no manual entries in this range"))));
    return;
  }
  const kinds = ENTRY_KIND();
  for (const e of entries) {
    body.append(el("tr", { class: "entry", "data-kind": e.kind, "data-ts": e.reading_ts },
      el("td", {}, fmtTime(e.reading_ts)), el("td", {}, kinds[e.kind] || e.kind),
      el("td", { class: "num" }, fmtFull(e.value)),
      el("td", { class: "num" }, e.original === null || e.original === undefined ? "" : fmtFull(e.original)),
      el("td", {}, e.author), el("td", {}, e.reason), el("td", {}, fmtTime(e.entered_at))));
  }
}

// a hand-entered value as the clerk typed it (no rounding: it is compared with the meter's display)
function fmtFull(v) {
  if (v === null || v === undefined) return "";
  return Number(v).toLocaleString(LANG, { maximumFractionDigits: 6 });
}

function flagText(flag) {
  return flag === "manual" ? _("manual reading (entry kind)") : flag === "corrected" ? _("corrected reading") : flag;
}

function fillTable(sel, rows) {
  $(sel + " tbody").replaceChildren(...(rows.length
    ? rows.map((r) => el("tr", {}, ...r.map((c) => el("td", {}, c))))
    : [el("tr", {}, el("td", { class: "muted", colspan: "4" }, _("none")))]));
}

// A line chart: one line per stretch with data (the API's "stretches", the range minus its
// gaps), so it breaks at a real gap only; gaps are shaded, flagged values are red dots, a
// stretch holding a single point is drawn as a dot. A rolled-up row stands for its whole
// bucket, so it belongs to every stretch its bucket overlaps.
function drawChart(h, col) {
  const W = 860, H = 260, L = 64, R = 10, T = 16, B = 30;
  const pts = h.rows.filter((r) => r[col] !== null && r[col] !== undefined).map((r) => [r.time, r[col]]);
  const box = $("#chart");
  if (!pts.length) {
    box.replaceChildren(el("p", { class: "muted" }, col === undefined ? _("no readings in this range")
      : _("no %(quantity)s readings in this range", { quantity: col })));
    return;
  }
  const x0 = h.start, x1 = h.end;
  let y0 = Math.min(...pts.map((p) => p[1])), y1 = Math.max(...pts.map((p) => p[1]));
  if (y1 === y0) { y1 += 1; y0 -= 1; }
  const yTicks = roundTicks(y0, y1);
  y0 = Math.min(y0, yTicks[0]); y1 = Math.max(y1, yTicks[yTicks.length - 1]);
  const X = (t) => L + (t - x0) / (x1 - x0) * (W - L - R);
  const Y = (v) => T + (1 - (v - y0) / (y1 - y0)) * (H - T - B);
  const f1 = (v) => v.toFixed(1);
  const svg = svgEl("svg", { id: "history-svg", width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: "img",
                             "aria-label": col });
  for (const g of h.gaps) {
    svg.append(svgEl("rect", { class: "gap", x: f1(X(g.start)), y: T, width: f1(Math.max(1, X(g.end) - X(g.start))),
                               height: H - T - B, fill: "#fed7d7" },
      svgEl("title", {}, _("gap: no reading for %(duration)s", { duration: fmtDur(g.duration_s) }))));
  }
  const width = h.mode === "hour" ? 3600000 : h.mode === "day" ? 86400000 : 0;
  const stretches = h.stretches || [[x0, x1]];
  let d = "";
  const dots = [];
  for (const [s0, s1] of stretches) {
    const inside = pts.filter(([t]) => t + width >= s0 && t <= s1);
    inside.forEach(([t, v], i) => { d += (i === 0 ? "M" : "L") + f1(X(t)) + "," + f1(Y(v)); });
    if (inside.length === 1) {
      dots.push(svgEl("circle", { class: "point", cx: f1(X(inside[0][0])), cy: f1(Y(inside[0][1])), r: 2, fill: "#2b6cb0" }));
    }
  }
  const base = col.replace(/_(mean|consumption)$/, "");
  const clamp = (v) => Math.min(Math.max(v, y0), y1);
  const unit = h.units[col] || "";
  for (const t of yTicks) {
    svg.append(svgEl("line", { class: "grid", x1: L, x2: W - R, y1: f1(Y(t)), y2: f1(Y(t)), stroke: "#edf2f7" }),
      svgEl("text", { class: "ytick", x: L - 4, y: f1(Y(t) + 3.5), "font-size": 10, "text-anchor": "end" },
        t.toLocaleString(LANG, { maximumFractionDigits: 6 })));
  }
  svg.append(svgEl("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, stroke: "#444" }),
    svgEl("text", { x: 4, y: T + (H - T - B) / 2, "font-size": 10 }, unit),
    ...[0, 0.25, 0.5, 0.75, 1].map((f) => {
      const t = x0 + f * (x1 - x0);
      return svgEl("text", { x: X(t), y: H - 10, "font-size": 10,
        "text-anchor": f === 0 ? "start" : f === 1 ? "end" : "middle" }, fmtTime(t));
    }),
    svgEl("path", { class: "series", d, fill: "none", stroke: "#2b6cb0", "stroke-width": 1.4 }), ...dots);
  for (const f of h.flags) {
    if (f.quantity !== base || f.value === null) continue;
    const cx = X(f.ts), cy = Y(clamp(f.value));
    if (!ENTERED.has(f.flag)) {  // a doubtful value: a red dot
      svg.append(svgEl("circle", { class: "flag", cx: f1(cx), cy: f1(cy), r: 4, fill: "#c53030" },
        svgEl("title", {}, `${f.flag}: ${fmtNum(f.value)}`)));
    } else if (h.mode === "raw") {
      // hand-entered: a green square for a manual reading, an orange diamond for a corrected one
      const size = 8;
      svg.append(svgEl("rect", { class: "entered " + f.flag, "data-ts": f.ts, x: f1(cx - size / 2), y: f1(cy - size / 2),
                                 width: size, height: size,
                                 transform: f.flag === "corrected" ? `rotate(45 ${f1(cx)} ${f1(cy)})` : null },
        svgEl("title", {}, `${flagText(f.flag)}: ${fmtFull(f.value)} (${fmtTime(f.ts)})`)));
    }
  }
  svg.append(svgEl("text", { x: L + 6, y: T + 10, "font-size": 11, "font-weight": "bold" }, `${col} [${unit}]`));
  box.replaceChildren(svg);
}

// an SVG element, its text (if any) set as text
function svgEl(tag, attrs = {}, ...children) {
  const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== null && v !== undefined) e.setAttribute(k, v);
  for (const c of children) e.append(c instanceof Node ? c : String(c ?? ""));
  return e;
}

const ENTERED = new Set(["manual", "corrected"]);

// ------------------------------------------------------------------ manual entry

// A manual reading or a correction of a stored one, for this meter's counter (the API takes
// the counter from the site file). The time is the site's wall-clock time. A refusal shows
// the API's reason, already in the reader's language; success reloads the history, widened
// to the entry's day when it lies outside the range shown.
// a correction needs a reason (the API refuses one without): the browser asks for it first
$("#entry-kind").addEventListener("change", () => {
  $("#entry-reason").required = $("#entry-kind").value === "correction";
});

$("#entry-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const m = state.meter;
  const msg = $("#entry-msg");
  msg.className = "muted"; msg.textContent = _("saving…");
  const time = $("#entry-time").value;
  const body = { kind: $("#entry-kind").value, device: m.device, gateway: m.gateway, time,
                 value: Number($("#entry-value").value), reason: $("#entry-reason").value.trim() };
  $("#entry-save").disabled = true;
  try {
    const r = await api(`/api/v1/sites/${encodeURIComponent(m.site)}/entries?` +
      new URLSearchParams({ lang: LANG }), { method: "POST", body: JSON.stringify(body),
      headers: { "Content-Type": "application/json" } });
    const e = await r.json();
    const day = time.slice(0, 10);
    if ($("#from").value > day) $("#from").value = day;
    if ($("#to").value && $("#to").value <= day) $("#to").value = new Date(Date.parse(day) + 86400000).toISOString().slice(0, 10);
    if ($("#mode").value !== "raw") { $("#mode").value = "raw"; }
    $("#quantity").replaceChildren();
    state.focus = e.quantity;  // show the quantity entered, with its new point
    await loadHistory();
    msg.className = "ok";
    msg.textContent = _("Saved: %(kind)s %(value)s at %(time)s, entered by %(author)s",
      { kind: ENTRY_KIND()[e.kind] || e.kind, value: fmtFull(e.value), time: fmtTime(e.reading_ts), author: e.author });
    $("#entry-value").value = ""; $("#entry-reason").value = "";
  } catch (e) {
    msg.className = "error";
    msg.textContent = _("Not saved: %(reason)s", { reason: e.message });
  } finally { $("#entry-save").disabled = false; }
});

$("#range-form").addEventListener("submit", (ev) => { ev.preventDefault(); loadHistory(); });
$("#mode").addEventListener("change", () => { $("#quantity").replaceChildren(); loadHistory(); });

async function download(path, fallbackName) {
  const r = await api(path);
  const blob = await r.blob();
  const cd = r.headers.get("Content-Disposition") || "";
  const m = /filename="([^"]+)"/.exec(cd);
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = m ? m[1] : fallbackName;
  document.body.appendChild(a); a.click(); a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10000);
}

for (const fmt of ["csv", "xlsx"]) {
  $("#dl-" + fmt).addEventListener("click", () => {
    const m = state.meter;
    const p = rangeParams({ format: fmt });
    download(`/api/v1/sites/${encodeURIComponent(m.site)}/meters/${encodeURIComponent(m.device)}/export?${p}`,
             `${m.device}.${fmt}`).catch((e) => { $("#summary").textContent = _("Export failed: %(error)s", { error: e.message }); });
  });
}

// ------------------------------------------------------------------ alerts

async function loadAlerts() {
  const p = new URLSearchParams({ active_only: $("#active-only").checked, lang: LANG });
  const body = await (await api("/api/v1/alerts?" + p)).json();
  const canAck = state.who && state.who.may_acknowledge;
  $("#alert-table tbody").replaceChildren(...(body.alerts.length ? body.alerts.map((a) => {
    const where = [a.labels.building, a.labels.device || a.labels.boiler || a.labels.gateway].filter(Boolean).join(" / ");
    const active = a.state === "pending" || a.state === "firing";
    const action = a.acked_by ? _("acknowledged by %(name)s", { name: a.acked_by })
      : active && canAck ? el("button", { class: "ack", "data-fp": a.fingerprint }, _("Acknowledge")) : "";
    const rule = label("rules", a.rule);
    return el("tr", { class: a.acked_by ? "acked" : "", "data-fp": a.fingerprint },
      el("td", {}, fmtTime(a.since)),
      el("td", { title: a.rule }, rule, ...(rule !== a.rule ? [" ", el("span", { class: "muted" }, a.rule)] : [])),
      el("td", { class: "sev-" + a.severity }, label("severities", a.severity)), el("td", {}, where),
      el("td", { class: "state", "data-state": a.state }, label("alert_states", a.state)),
      el("td", {}, a.summary), el("td", { class: "action" }, action));
  }) : [el("tr", {}, el("td", { colspan: "7", class: "muted" }, _("no alerts")))]));
  $("#alert-msg").textContent = body.source === "rules" ? _("source: live rules service")
    : _("source: stored history");
  if (WANTED_ALERT) {
    const row = [...document.querySelectorAll("#alert-table tbody tr[data-fp]")]
      .find((tr) => tr.dataset.fp === WANTED_ALERT || tr.dataset.fp.startsWith(WANTED_ALERT));
    if (row) { row.classList.add("wanted"); row.scrollIntoView({ block: "center" }); }
  }
}

$("#active-only").addEventListener("change", loadAlerts);
$("#alert-table").addEventListener("click", async (ev) => {
  const b = ev.target.closest("button.ack");
  if (!b) return;
  b.disabled = true;
  try {
    await api(`/api/v1/alerts/${encodeURIComponent(b.dataset.fp)}/ack`, { method: "POST" });
    $("#alert-msg").textContent = _("Alert acknowledged.");
    await loadAlerts();
  } catch (e) { b.disabled = false; $("#alert-msg").textContent = _("Could not acknowledge: %(error)s", { error: e.message }); }
});

// ------------------------------------------------------------------ reports

function fillReportBuildings() {
  const s = state.sites.find((x) => x.site === $("#report-site").value);
  $("#report-building").replaceChildren(el("option", { value: "" }, _("whole site")),
    ...((s && s.tree) || []).filter((b) => b.floor_area_m2 !== null)
      .map((b) => el("option", { value: b.id }, b.name)));
}
$("#report-site").addEventListener("change", fillReportBuildings);

function reportPath(fmt) {
  const p = new URLSearchParams({ format: fmt, lang: LANG });
  if ($("#report-building").value) p.set("building", $("#report-building").value);
  return `/api/v1/sites/${encodeURIComponent($("#report-site").value)}/reports/` +
    `${encodeURIComponent($("#report-period").value.trim())}?${p}`;
}

$("#report-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  $("#report-msg").textContent = _("generating…");
  try { await download(reportPath("pdf"), "report.pdf"); $("#report-msg").textContent = _("downloaded"); }
  catch (e) { $("#report-msg").textContent = _("Report failed: %(error)s", { error: e.message }); }
});
$("#report-html").addEventListener("click", async () => {
  try {
    const html = await (await api(reportPath("html"))).text();
    const w = window.open("", "_blank");
    if (w) { w.document.write(html); w.document.close(); }
  } catch (e) { $("#report-msg").textContent = _("Report failed: %(error)s", { error: e.message }); }
});

// ------------------------------------------------------------------ energy and cost

function fmtMoney(v) {
  if (v === null || v === undefined) return "–";
  return Number(v).toLocaleString(LANG, { minimumFractionDigits: 2, maximumFractionDigits: 2 });
}

// The period's consumption and cost per building, from the report's JSON (the same figures
// as the PDF: computed once, by energy/, on the site's tariffs)
$("#report-show").addEventListener("click", async () => {
  const view = $("#energy-view");
  $("#report-msg").textContent = _("loading…");
  try {
    const rep = await (await api(reportPath("json"))).json();
    view.replaceChildren(...energyView(rep));
    $("#report-msg").textContent = rep.period_text;
  } catch (e) {
    view.replaceChildren();
    $("#report-msg").textContent = _("Report failed: %(error)s", { error: e.message });
  }
});

function energyView(rep) {
  return rep.buildings.map((b) => {
    const box = el("div", { class: "building-energy", "data-building": b.id },
      el("h3", {}, `${b.name} · ${rep.period_text}`));
    const units = {};
    const use = el("table", { class: "energy-use" }, el("thead", {}, el("tr", {},
      el("th", {}, _("energy type")), el("th", { class: "num" }, _("period consumption")), el("th", {}, _("unit of measure")),
      el("th", { class: "num" }, _("kgce")))));
    const ub = el("tbody");
    for (const e of b.energy) {
      units[e.energy_type] = e.unit;
      ub.append(el("tr", {}, el("td", {}, e.energy_text), el("td", { class: "num" }, fmtNum(e.amount)),
        el("td", {}, e.unit), el("td", { class: "num" }, fmtNum(e.kgce))));
    }
    use.append(ub);
    box.append(el("div", { class: "scroll" }, use));
    const costs = Object.entries(b.cost || {});
    if (!costs.length) box.append(el("p", { class: "muted no-cost" }, _("no tariff for this building in the site file")));
    for (const [et, c] of costs) box.append(costTable(et, c, units[et] || "kWh"));
    return box;
  });
}

// one energy type's bill: a line per tariff band (and per price set when the price changed
// in the period), the demand charge, the total; the tariff's source and confidence mark
function costTable(et, c, unit) {
  const bands = new Set(c.lines.map((l) => l.band));
  const several = c.lines.length > bands.size;  // a price change inside the period
  const t = el("table", { class: "cost", "data-energy": et },
    el("caption", {}, _("%(energy)s cost (%(currency)s), tariff %(tariff)s",
      { energy: label("energy_types", et), currency: c.currency, tariff: c.tariff })),
    el("thead", {}, el("tr", {}, el("th", {}, _("tariff band")),
      el("th", { class: "num" }, _("consumption (%(unit)s)", { unit })),
      el("th", { class: "num" }, _("price (%(currency)s/%(unit)s)", { currency: c.currency, unit })),
      el("th", { class: "num" }, _("cost (%(currency)s)", { currency: c.currency })))));
  const tb = el("tbody");
  for (const l of c.lines) {
    const band = several && l.valid_from ? _("%(band)s (prices from %(date)s)", { band: l.band_text, date: l.valid_from }) : l.band_text;
    tb.append(el("tr", { "data-band": l.band }, el("td", {}, band), el("td", { class: "num" }, fmtNum(l.amount)),
      el("td", { class: "num" }, l.price === null ? "–" : fmtFull(l.price)),
      el("td", { class: "num" }, l.cost === null ? _("no price") : fmtMoney(l.cost))));
  }
  const foot = el("tfoot");
  if (c.demand_cost || c.demand_kw !== null) {
    foot.append(el("tr", { class: "demand" }, el("td", { colspan: "3" },
      c.demand_kw !== null ? _("demand charge (maximum demand %(kw)s kW)", { kw: fmtNum(c.demand_kw) })
        : _("demand charge (contracted capacity)")), el("td", { class: "num" }, fmtMoney(c.demand_cost))));
  }
  const amount = c.lines.reduce((a, l) => a + l.amount, 0);
  foot.append(el("tr", { class: "total" }, el("th", {}, _("total (cost table)")), el("th", { class: "num" }, fmtNum(amount)),
    el("th", {}), el("th", { class: "num" }, fmtMoney(c.total))));
  t.append(tb, foot);
  const notes = [_("source: %(source)s (confidence %(mark)s)", { source: c.source, mark: c.mark })];
  if (c.unpriced) notes.push(_("%(amount)s %(unit)s had no valid price and are not costed", { amount: fmtNum(c.unpriced), unit }));
  return el("div", { class: "scroll cost-box" }, t, ...notes.map((n) => el("p", { class: "muted small" }, n)));
}


// ------------------------------------------------------------------ building energy view

// A building's consumption by day, ISO week or month in site time (the API's buckets; the
// figures are the report's), stacked by sub-item, with the previous period as a line and
// the same period a year before as outline bars; below, the numbers with 环比 and 同比.
const SUBITEM_COLORS = { "01A00": "#d69e2e", "01B00": "#3182ce", "01C00": "#38a169",
                         "01D00": "#805ad5", "": "#a0aec0" };
const TOTAL_COLOR = "#2b6cb0", PREV_COLOR = "#dd6b20", LY_COLOR = "#4a5568";
const bv = { site: null, building: null, every: "day", typed: false };
const COUNTED = ["electricity", "water", "gas", "heat", "cooling", "steam"];

function openBuilding(site, building) {
  const s = state.sites.find((x) => x.site === site);
  const b = ((s && s.tree) || []).find((x) => x.id === building);
  if (!b) return;
  Object.assign(bv, { site, building, typed: false });
  $("#meter").hidden = true;
  $("#bview").hidden = false;
  $("#bview-title").textContent = _("%(building)s · energy analysis", { building: b.name });
  // the energy types the building has a total meter of (the API says, from the site file):
  // a sub-meter's type alone has no building figure to show
  const types = (b.energy_types || []).filter((t) => COUNTED.includes(t));
  $("#bview-energy").replaceChildren(...types.map((t) => el("option", { value: t }, label("energy_types", t))));
  $("#bview-from").value = ""; $("#bview-to").value = "";
  return loadBuildingEnergy();
}

async function loadBuildingEnergy() {
  const p = new URLSearchParams({ every: bv.every, energy_type: $("#bview-energy").value || "electricity", lang: LANG });
  if (bv.typed && $("#bview-from").value) p.set("start", $("#bview-from").value);
  if (bv.typed && $("#bview-to").value) p.set("end", $("#bview-to").value);
  document.querySelectorAll("#bview-every button").forEach((x) =>
    x.setAttribute("aria-pressed", String(x.dataset.every === bv.every)));
  const msg = $("#bview-msg");
  msg.className = "muted"; msg.textContent = _("loading…");
  const asked = bv.asked = (bv.asked || 0) + 1;  // a quicker later answer wins, not the last to arrive
  let v;
  try {
    v = await (await api(`/api/v1/sites/${encodeURIComponent(bv.site)}/buildings/` +
      `${encodeURIComponent(bv.building)}/energy?${p}`)).json();
    if (asked !== bv.asked) return;
  } catch (e) {
    if (asked !== bv.asked) return;
    msg.className = "error"; msg.textContent = _("Could not load: %(error)s", { error: e.message });
    $("#bview-chart").replaceChildren(); $("#bview-table").replaceChildren(); $("#bview-legend").replaceChildren();
    return;
  }
  state.tz = v.tz;
  $("#bview-from").value = isoDate(v.start);
  $("#bview-to").value = v.partial ? "" : isoDate(v.end);
  msg.textContent = v.partial ? _("* still running: figures up to now, compared with as long a part of the earlier periods") : "";
  $("#bview").dataset.every = v.every;
  drawEnergy(v);
  fillEnergyTable(v);
}

$("#bview-every").addEventListener("click", (ev) => {
  const b = ev.target.closest("button[data-every]");
  if (!b) return;
  bv.every = b.dataset.every;
  loadBuildingEnergy();
});
$("#bview-energy").addEventListener("change", loadBuildingEnergy);
for (const id of ["#bview-from", "#bview-to"]) $(id).addEventListener("change", () => { bv.typed = true; });
$("#bview-form").addEventListener("submit", (ev) => { ev.preventDefault(); bv.typed = true; loadBuildingEnergy(); });

// round ticks (steps of 1, 2, 2.5, 5 × 10^k) spanning [lo, hi]: 4 to 7 of them, from the
// first multiple of the step at or below lo to the first at or above hi
function roundTicks(lo, hi, count = 5) {
  const raw = (hi - lo) / count, mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 2.5, 5, 10].map((f) => f * mag).find((x) => x >= raw);
  const out = [];
  for (let t = Math.floor(lo / step) * step; t < hi + step * 0.999; t += step) out.push(Number(t.toPrecision(12)));
  return out;
}

// 0 and a few round steps (1, 2, 2.5, 5 × 10^k) up to at least max: ticks a reader can use
function niceTicks(max, count = 5) {
  if (!(max > 0)) return [0, 1];
  const raw = max / count, mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 2.5, 5, 10].map((f) => f * mag).find((s) => s >= raw);
  const out = [];
  for (let t = 0; t < max + step * 0.999; t += step) out.push(Number(t.toPrecision(12)));
  return out;
}

function drawEnergy(v) {
  const box = $("#bview-chart");
  const W = Math.max(320, Math.min(1000, (box.clientWidth || 860) - 2)), H = W < 500 ? 240 : 280;
  const L = 58, R = 8, T = 22, B = 34;
  const n = v.buckets.length;
  const values = [...v.buckets, ...v.previous, ...v.last_year].map((b) => b.total).filter((x) => x !== null);
  if (!values.length) {
    box.replaceChildren(el("p", { class: "muted" }, _("no readings of this building in this range")));
    $("#bview-legend").replaceChildren();
    return;
  }
  const ticks = niceTicks(Math.max(...values));
  const top = ticks[ticks.length - 1];
  const slot = (W - L - R) / n;
  const X = (i) => L + i * slot;
  const Y = (val) => T + (1 - val / top) * (H - T - B);
  const f1 = (x) => x.toFixed(1);
  const svg = svgEl("svg", { id: "energy-svg", width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: "img",
                             "aria-label": _("%(building)s · energy analysis", { building: v.building_name }) });
  // y-axis: gridlines and round ticks, the unit on top
  for (const t of ticks) {
    svg.append(svgEl("line", { class: "grid", x1: L, x2: W - R, y1: f1(Y(t)), y2: f1(Y(t)), stroke: t ? "#e2e8f0" : "#444" }),
      svgEl("text", { class: "ytick", x: L - 4, y: f1(Y(t) + 3.5), "font-size": 11, "text-anchor": "end" },
        t.toLocaleString(LANG, { maximumFractionDigits: 3 })));
  }
  svg.append(svgEl("text", { class: "unit", x: 4, y: 12, "font-size": 11, "font-weight": "bold" },
    `${v.energy_text} [${v.unit}]`));
  const codes = v.series.map((s) => s.code);
  const names = Object.fromEntries(v.series.map((s) => [s.code, s.name]));
  const bw = Math.min(56, Math.max(2, slot * 0.56)), ow = Math.min(80, Math.max(3, slot * 0.8));
  v.buckets.forEach((b, i) => {
    const cx = X(i) + slot / 2;
    const ly = v.last_year[i];
    if (ly.total !== null) {
      svg.append(svgEl("rect", { class: "ly", x: f1(cx - ow / 2), y: f1(Y(ly.total)), width: f1(ow),
        height: f1(Y(0) - Y(ly.total)), fill: "none", stroke: LY_COLOR, "stroke-dasharray": "3 2" },
        svgEl("title", {}, `${_("same period last year")} ${ly.label}: ${fmtNum(ly.total)} ${v.unit}`)));
    }
    if (b.total === null) return;
    const parts = codes.length && Object.keys(b.parts).length ? codes.map((c) => [c, b.parts[c] || 0]) : [[null, b.total]];
    let acc = 0;
    for (const [code, val] of parts) {
      if (val <= 0) continue;  // a negative rest (sub-meters above the total) is in the table
      const y1 = Y(acc + val), y0 = Y(acc);
      acc += val;
      svg.append(svgEl("rect", { class: "bar", "data-code": code ?? "total", x: f1(cx - bw / 2), y: f1(y1),
        width: f1(bw), height: f1(Math.max(0.5, y0 - y1)), fill: code === null ? TOTAL_COLOR : SUBITEM_COLORS[code] || "#718096" },
        svgEl("title", {}, `${b.label} · ${code === null ? _("total (energy view)") : names[code]}: ${fmtNum(val)} ${v.unit}`)));
    }
  });
  // the previous period: a line through its buckets, broken where it has no figure
  let d = "", pen = false;
  v.previous.forEach((p, i) => {
    if (p.total === null) { pen = false; return; }
    const cx = X(i) + slot / 2, cy = Y(p.total);
    d += (pen ? "L" : "M") + f1(cx) + "," + f1(cy);
    pen = true;
    svg.append(svgEl("circle", { class: "prev", cx: f1(cx), cy: f1(cy), r: 3, fill: PREV_COLOR },
      svgEl("title", {}, `${_("previous period (energy view)")} ${p.label}: ${fmtNum(p.total)} ${v.unit}`)));
  });
  if (d) svg.prepend(svgEl("path", { class: "prev-line", d, fill: "none", stroke: PREV_COLOR, "stroke-width": 1.5 }));
  // x-axis: the buckets' short labels (site time), as many as fit
  const every = Math.max(1, Math.ceil(n / Math.floor((W - L - R) / 44)));
  v.buckets.forEach((b, i) => {
    if (i % every) return;
    svg.append(svgEl("text", { class: "xtick", x: f1(X(i) + slot / 2), y: H - B + 15, "font-size": 11,
      "text-anchor": "middle" }, b.short + (b.partial ? "*" : "")));
  });
  box.replaceChildren(svg);
  const swatch = (color, cls) => el("span", { class: "swatch " + cls, style: `border-color:${color};background:${cls === "fill" ? color : "transparent"}` });
  const items = codes.length ? codes.map((c) => [SUBITEM_COLORS[c] || "#718096", "fill", names[c]])
    : [[TOTAL_COLOR, "fill", v.energy_text]];
  items.push([PREV_COLOR, "line", _("previous period (energy view)")], [LY_COLOR, "outline", _("same period last year")]);
  $("#bview-legend").replaceChildren(...items.map(([color, cls, text]) => el("span", { class: "item" }, swatch(color, cls), text)));
}

function fmtChange(x) {
  if (x === null || x === undefined) return "–";
  return (x > 0 ? "+" : "") + (x * 100).toLocaleString(LANG, { minimumFractionDigits: 1, maximumFractionDigits: 1 }) + "%";
}

function fillEnergyTable(v) {
  const t = $("#bview-table");
  const names = v.series.map((s) => s.name);
  const num = (x) => (x === null || x === undefined ? "–" : fmtNum(x));
  const head = el("tr", {}, el("th", {}, _("period (energy view)")),
    el("th", { class: "num" }, _("total (%(unit)s)", { unit: v.unit })),
    el("th", { class: "num" }, _("previous period (energy view)")), el("th", { class: "num mom" }, _("MoM")),
    el("th", { class: "num" }, _("same period last year")), el("th", { class: "num yoy" }, _("YoY")),
    ...names.map((nm) => el("th", { class: "num sub" }, nm)));
  const rows = v.buckets.map((b, i) => {
    const p = v.previous[i], y = v.last_year[i];
    return el("tr", { "data-start": b.start },
      el("td", {}, b.label + (b.partial ? "*" : "")), el("td", { class: "num total" }, num(b.total)),
      el("td", { class: "num prev", title: p.label }, num(p.total)),
      el("td", { class: "num mom " + changeClass(b.mom) }, fmtChange(b.mom)),
      el("td", { class: "num ly", title: y.label }, num(y.total)),
      el("td", { class: "num yoy " + changeClass(b.yoy) }, fmtChange(b.yoy)),
      ...v.series.map((s) => el("td", { class: "num sub" }, b.total === null ? "–" : num(b.parts[s.code]))));
  });
  const tt = v.totals;
  // an earlier range's sum only where each of its buckets has a figure (else it compares coverage)
  const foot = el("tr", { class: "total" }, el("th", {}, _("whole range")), el("th", { class: "num" }, num(tt.current)),
    el("th", { class: "num" }, tt.complete.previous ? num(tt.previous) : "–"),
    el("th", { class: "num mom" }, fmtChange(tt.mom)),
    el("th", { class: "num" }, tt.complete.last_year ? num(tt.last_year) : "–"),
    el("th", { class: "num yoy" }, fmtChange(tt.yoy)), ...v.series.map(() => el("th", {})));
  t.replaceChildren(el("thead", {}, head), el("tbody", {}, ...rows), el("tfoot", {}, foot));
}

function changeClass(x) { return x === null || x === undefined ? "" : x > 0 ? "up" : x < 0 ? "down" : ""; }

// ------------------------------------------------------------------ language

// the choice is remembered in this browser; the page is rendered in it by the server
// (?lang=), so the switch reloads; the token in sessionStorage signs the tab in again
$("#lang").addEventListener("change", () => {
  localStorage.setItem("enmon-lang", $("#lang").value);
  location.replace(withLang($("#lang").value));
});
// the page in another language, keeping the rest of the address (a notification's ?alert=)
function withLang(lang) {
  const q = new URLSearchParams(location.search);
  q.set("lang", lang);
  return "/?" + q.toString();
}
{
  const saved = localStorage.getItem("enmon-lang");
  if (saved && saved !== LANG && !new URLSearchParams(location.search).has("lang")) {
    location.replace(withLang(saved));
  }
}

// this month in the site's time zone (a UTC month is the previous one until 08:00 on the 1st);
// a month still running is reported up to now and labelled partial
$("#report-period").value = new Date().toLocaleString("sv-SE", { timeZone: state.tz }).slice(0, 7);
if (state.token) signIn().catch(() => signOut(""));

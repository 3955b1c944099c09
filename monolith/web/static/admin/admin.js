// The operations page: polls /api/admin/overview and draws it. No framework, no inline
// script (the page's CSP allows scripts from this origin only); text from the server is
// always set as text, never as HTML.
"use strict";

(function () {
  const REFRESH_MS = 10000;
  const SVG = "http://www.w3.org/2000/svg";
  const CSRF = { "X-Monolith-CSRF": "1" };
  let last = null;

  // -- small helpers ----------------------------------------------------------------------

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") el.className = v;
      else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }

  function s(tag, attrs, text) {
    const el = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
    if (text !== undefined) el.textContent = text;
    return el;
  }

  const nf = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });
  function num(v) {
    if (v === null || v === undefined) return "—";
    const a = Math.abs(v);
    if (a >= 1e9) return nf.format(v / 1e9) + "G";
    if (a >= 1e6) return nf.format(v / 1e6) + "M";
    if (a >= 1e4) return nf.format(v / 1e3) + "k";
    if (a > 0 && a < 10) return v.toFixed(2).replace(/\.?0+$/, "");
    return nf.format(v);
  }
  function dur(sec) {
    if (sec === null || sec === undefined) return "—";
    if (sec < 0.001) return (sec * 1e6).toFixed(0) + " µs";
    if (sec < 1) return (sec * 1000).toFixed(sec < 0.01 ? 1 : 0) + " ms";
    if (sec < 120) return sec.toFixed(sec < 10 ? 2 : 1) + " s";
    if (sec < 7200) return Math.round(sec / 60) + " min";
    if (sec < 172800) return (sec / 3600).toFixed(1) + " h";
    return Math.round(sec / 86400) + " d";
  }
  function ms(v) {
    return v >= 100 ? nf.format(Math.round(v)) : v.toFixed(v >= 10 ? 1 : 2);
  }
  function pct(r, digits) {
    if (r === null || r === undefined) return "—";
    return (r * 100).toFixed(digits === undefined ? 2 : digits) + "%";
  }
  function bytes(b) {
    if (!b) return "0 B";
    const units = ["B", "KB", "MB", "GB", "TB"];
    let i = 0;
    while (b >= 1024 && i < units.length - 1) { b /= 1024; i++; }
    return (b >= 100 ? b.toFixed(0) : b.toFixed(1)) + " " + units[i];
  }
  function ago(ts) {
    const d = Date.now() / 1000 - ts;
    if (d < 60) return "just now";
    if (d < 3600) return Math.round(d / 60) + " min ago";
    return dur(d) + " ago";
  }
  function clock(ts, seconds) {
    const opts = { hour: "2-digit", minute: "2-digit" };
    if (seconds) opts.second = "2-digit";
    return new Date(ts * 1000).toLocaleTimeString([], opts);
  }

  let toastTimer = 0;
  function toast(text, bad) {
    const el = document.getElementById("toast");
    el.textContent = text;
    el.className = "toast show" + (bad ? " bad" : "");
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { el.className = "toast"; }, 3200);
  }

  // -- current numbers --------------------------------------------------------------------

  function kpi(label, value, note, level) {
    return h("div", { class: "kpi " + (level || ""), "data-kpi": label },
      h("div", { class: "label" }, label),
      h("div", { class: "value" }, value),
      h("div", { class: "note", title: note || "" }, note || "\u00a0"));
  }

  function renderKpis(n) {
    const depth = Object.values(n.queue_depth || {}).reduce((a, b) => a + b, 0);
    const failedJobs = (n.jobs_by_state || {}).failed || 0;
    const hit = n.cache.hit_ratio;
    const items = [
      kpi("Requests / s", num(n.request_rate), num(n.requests_total) + " since start"),
      kpi("Error rate", pct(n.error_ratio), num(n.errors_total) + " 5xx since start",
        n.error_ratio === null ? "" : n.error_ratio > 0.01 ? "bad" : n.error_ratio > 0.002 ? "warn" : "ok"),
      kpi("p95 latency", dur(n.p95_seconds), n.p95_at ? "all routes, at " + clock(n.p95_at, true) : "no requests timed yet",
        n.p95_seconds === null ? "" : n.p95_seconds > 1 ? "bad" : n.p95_seconds > 0.5 ? "warn" : "ok"),
      kpi("Jobs / s", num(n.job_rate), num(n.jobs_succeeded_total) + " succeeded since start"),
      kpi("Failed jobs", num(failedJobs), n.job_failure_rate ? num(n.job_failure_rate) + "/s failing now" : num(n.jobs_retried_total) + " retries since start",
        n.job_failure_rate > 0 ? "bad" : failedJobs > 0 ? "warn" : "ok"),
      kpi("Queue depth", num(depth), depth ? "oldest waiting " + dur(n.oldest_job_age_seconds) : "nothing waiting",
        n.oldest_job_age_seconds > 60 ? "bad" : depth > 0 ? "warn" : "ok"),
      kpi("Cache hit rate", hit === null ? "—" : pct(hit, 1), num(n.cache.evictions) + " evictions",
        hit === null ? "" : hit < 0.5 ? "warn" : "ok"),
      kpi("Memory", bytes(n.memory_bytes), n.processes + " processes"),
      kpi("CPU", n.cpu_cores === null ? "—" : n.cpu_cores.toFixed(2), "cores busy, all processes"),
      kpi("Event-loop lag", dur(n.loop_lag_seconds), num(n.loop_blocks_total) + " blocking calls seen",
        n.loop_lag_seconds > 0.5 ? "bad" : n.loop_lag_seconds > 0.1 ? "warn" : "ok"),
      kpi("Worker restarts", num(n.worker_restarts), n.uptime_seconds ? "up " + dur(n.uptime_seconds) : "",
        n.worker_restarts > 2 ? "bad" : n.worker_restarts > 0 ? "warn" : "ok"),
      kpi("Slow statements", num(n.db_slow_total), num(n.db_statements_total) + " statements run",
        n.db_slow_total > 0 ? "warn" : "ok"),
      kpi("Limits per process", num(n.rate_limit_fallbacks_total || 0),
        n.rate_limit_fallbacks_total ? "requests counted per worker: the store was unavailable" : "every limit counted in the store",
        n.rate_limit_fallbacks_total ? "warn" : "ok"),
    ];
    document.getElementById("kpis").replaceChildren(...items);

    // Every state but healthy says why, next to the pill.
    const bad = [], warn = [];
    if (n.error_ratio > 0.01) bad.push("error rate " + pct(n.error_ratio) + " (over 1%)");
    if (n.p95_seconds > 1) bad.push("p95 latency " + dur(n.p95_seconds) + " (over 1 s)");
    if (n.job_failure_rate > 0) bad.push("jobs failing now");
    if (failedJobs > 0) warn.push(num(failedJobs) + " failed job" + (failedJobs === 1 ? "" : "s"));
    if (n.loop_lag_seconds > 0.1) warn.push("event-loop lag " + dur(n.loop_lag_seconds) + " (over 100 ms)");
    if (n.worker_restarts > 0) warn.push(num(n.worker_restarts) + " worker restart" + (n.worker_restarts === 1 ? "" : "s"));
    const status = document.getElementById("status");
    status.textContent = bad.length ? "attention needed" : warn.length ? "degraded" : "healthy";
    status.className = "pill " + (bad.length ? "bad" : warn.length ? "warn" : "ok");
    const reasons = [...bad, ...warn].join(" · ");
    status.title = reasons;
    document.getElementById("status-reason").textContent = reasons;
  }

  // -- plots ------------------------------------------------------------------------------

  // floor: the smallest top of the y axis, so a quiet hour does not look like a storm.
  const CHARTS = {
    rate: { key: "request_rate", fmt: (v) => num(v) + "/s", floor: 1 },
    p95: { key: "p95_seconds", fmt: dur, limit: 1, limitLabel: "1 s", floor: 0.05 },
    errors: { key: "error_ratio", fmt: (v) => pct(v, 1), limit: 0.01, limitLabel: "1%", floor: 0.012 },
    queue: { key: "queue_depth", fmt: num, floor: 4 },
  };

  function niceMax(v) {
    if (v <= 0) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }

  function drawChart(el, history) {
    const spec = CHARTS[el.dataset.kind];
    const W = Math.max(el.clientWidth, 260), H = el.clientHeight || 190;
    const L = 56, R = 14, T = 12, B = 24;
    const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": el.dataset.kind });
    const ts = history.t || [];
    const ys = history[spec.key] || [];
    const points = ts.map((t, i) => [t, ys[i]]).filter((p) => p[1] !== null && p[1] !== undefined);
    const now = Date.now() / 1000;
    // The last hour, or less while the server has not been up that long.
    const first = points.length ? points[0][0] : now;
    const x0 = Math.max(now - 3600, Math.min(first - 60, now - 300)), x1 = now;
    const top = niceMax(Math.max(spec.floor, ...points.map((p) => p[1] * 1.15)));
    const X = (t) => L + ((t - x0) / (x1 - x0)) * (W - L - R);
    const Y = (v) => T + (1 - v / top) * (H - T - B);

    for (let i = 0; i <= 4; i++) {
      const v = (top * i) / 4, y = Y(v);
      svg.append(s("line", { class: "grid", x1: L, x2: W - R, y1: y, y2: y }));
      svg.append(s("text", { class: "axis", x: L - 8, y: y + 4, "text-anchor": "end" }, spec.fmt(v)));
    }
    // As many time labels as fit: about 110 px each (a label with seconds is ~80 px wide).
    const ticks = Math.max(2, Math.min(4, Math.floor((W - L - R) / 110)));
    for (let i = 0; i <= ticks; i++) {
      const t = x0 + (i * (x1 - x0)) / ticks;
      svg.append(s("text", { class: "axis", x: X(t), y: H - 6, "text-anchor": i === 0 ? "start" : i === ticks ? "end" : "middle" },
        clock(t, x1 - x0 < 900)));
    }
    if (spec.limit && spec.limit <= top) {
      const y = Y(spec.limit);
      svg.append(s("line", { class: "limit", x1: L, x2: W - R, y1: y, y2: y }));
      svg.append(s("text", { class: "limit-label", x: W - R - 4, y: y - 5, "text-anchor": "end" }, "alert " + spec.limitLabel));
    }
    if (points.length === 0) {
      const cx = (L + W - R) / 2, cy = T + (H - T - B) * 0.3;
      svg.append(s("rect", { class: "empty-bg", x: cx - 140, y: cy - 16, width: 280, height: 26, rx: 6 }));
      svg.append(s("text", { class: "empty", x: cx, y: cy + 2, "text-anchor": "middle" },
        "collecting samples: a point every 15 s"));
    } else {
      // Break the line where samples are missing (server down, or a gap over a minute).
      let d = "", area = "", start = null, prev = null;
      const flush = () => {
        if (start !== null && prev !== null) area += `L${X(prev[0])},${Y(0)}L${X(start[0])},${Y(0)}Z`;
      };
      for (const p of points) {
        const gap = prev && p[0] - prev[0] > 60;
        if (!prev || gap) { flush(); d += `M${X(p[0])},${Y(p[1])}`; area += `M${X(p[0])},${Y(p[1])}`; start = p; }
        else { d += `L${X(p[0])},${Y(p[1])}`; area += `L${X(p[0])},${Y(p[1])}`; }
        prev = p;
      }
      flush();
      svg.append(s("path", { class: "area", d: area }));
      svg.append(s("path", { class: "line", d }));
      const lastP = points[points.length - 1];
      svg.append(s("circle", { class: "dot", cx: X(lastP[0]), cy: Y(lastP[1]), r: 3.5 }));
      svg.append(s("text", { class: "now", x: L + 6, y: T + 12 }, "now " + spec.fmt(lastP[1])));
    }
    el.replaceChildren(svg);
  }

  function renderCharts(history) {
    document.querySelectorAll(".chart").forEach((el) => drawChart(el, history));
  }

  // -- failed jobs ------------------------------------------------------------------------

  async function act(method, url, okText) {
    const r = await fetch(url, { method, headers: CSRF, credentials: "same-origin" });
    if (r.ok) { toast(okText); await refresh(); return; }
    let detail = r.statusText;
    try { detail = (await r.json()).detail; } catch (e) { /* not JSON */ }
    toast(detail, true);
    await refresh();
  }

  function renderFailed(jobs) {
    const count = document.getElementById("failed-count");
    count.textContent = String(jobs.length);
    count.className = "count" + (jobs.length ? " bad" : "");
    const box = document.getElementById("failed-jobs");
    if (!jobs.length) {
      box.replaceChildren(h("div", { class: "empty-state" }, h("strong", {}, "No failed jobs"), "Every job finished or is still trying."));
      return;
    }
    const rows = jobs.map((j) => {
      const retry = h("button", { class: "btn", type: "button", "data-action": "retry", "data-job": j.id,
        onclick: (e) => { e.target.disabled = true; act("POST", `/api/admin/jobs/${j.id}/retry`, `Job ${j.id} queued again`); } }, "Retry");
      const discard = h("button", { class: "btn danger", type: "button", "data-action": "discard", "data-job": j.id,
        onclick: (e) => {
          const b = e.target;
          if (!b.classList.contains("armed")) {  // two clicks: no dialog to dismiss by mistake
            b.classList.add("armed"); b.textContent = "Confirm";
            setTimeout(() => { b.classList.remove("armed"); b.textContent = "Discard"; }, 3000);
            return;
          }
          b.disabled = true;
          act("DELETE", `/api/admin/jobs/${j.id}`, `Job ${j.id} discarded`);
        } }, "Discard");
      return h("tr", { "data-job-row": j.id },
        h("td", { class: "num mono" }, j.id),
        h("td", {}, h("code", {}, j.name)),
        h("td", { class: "num" }, `${j.attempts}/${j.max_attempts}`),
        h("td", { class: "error", title: j.error || "" }, j.error || ""),
        h("td", { class: "muted", title: new Date(j.updated_at * 1000).toLocaleString() }, ago(j.updated_at)),
        h("td", { class: "actions" }, retry, discard));
    });
    box.replaceChildren(h("table", {},
      h("thead", {}, h("tr", {}, h("th", { class: "num" }, "Job"), h("th", {}, "Name"), h("th", { class: "num" }, "Attempts"),
        h("th", {}, "Last error"), h("th", {}, "Failed"), h("th", {}, ""))),
      h("tbody", {}, rows)));
  }

  // -- queues -----------------------------------------------------------------------------

  function renderQueues(queues) {
    const box = document.getElementById("queues");
    if (!queues.length) {
      box.replaceChildren(h("div", { class: "empty-state" }, "No queues yet."));
      return;
    }
    const rows = queues.map((q) => {
      const verb = q.paused ? "resume" : "pause";
      const button = h("button", { class: "btn" + (q.paused ? "" : " danger"), type: "button", "data-action": verb, "data-queue": q.name,
        onclick: (e) => {
          e.target.disabled = true;
          act("POST", `/api/admin/jobs/queues/${encodeURIComponent(q.name)}/${verb}`, `Queue ${q.name} ${q.paused ? "resumed" : "paused"}`);
        } }, q.paused ? "Resume" : "Pause");
      const c = q.counts;
      return h("tr", { "data-queue-row": q.name },
        h("td", {}, h("code", {}, q.name)),
        h("td", { "data-queue-state": q.name }, h("span", { class: "pill " + (q.paused ? "warn" : "ok") }, q.paused ? "paused" : "active")),
        h("td", { class: "num" }, q.limit === null ? "—" : num(q.limit)),
        ["queued", "running", "done", "failed", "cancelled"].map((k) => h("td", { class: "num" }, num(c[k] || 0))),
        h("td", { class: "actions" }, button));
    });
    box.replaceChildren(h("table", {},
      h("thead", {}, h("tr", {}, h("th", {}, "Queue"), h("th", {}, "State"), h("th", { class: "num" }, "Limit"),
        ["Queued", "Running", "Done", "Failed", "Cancelled"].map((k) => h("th", { class: "num" }, k)), h("th", {}, ""))),
      h("tbody", {}, rows)));
  }

  // -- cache, job states, statements ------------------------------------------------------

  function stat(label, value) {
    return h("div", { class: "stat" }, h("div", { class: "label" }, label), h("div", { class: "value" }, value));
  }

  function renderCache(n) {
    const c = n.cache;
    const bar = h("span", {});
    bar.style.width = c.hit_ratio === null ? "0" : (c.hit_ratio * 100).toFixed(1) + "%";
    document.getElementById("cache").replaceChildren(
      h("div", { class: "stat" }, h("div", { class: "label" }, "Hit rate"),
        h("div", { class: "value", "data-stat": "cache-hit-rate" }, c.hit_ratio === null ? "no reads yet" : pct(c.hit_ratio, 1))),
      h("div", { class: "bar" }, bar),
      h("div", { class: "stats" },
        stat("Hits", num(c.hits)), stat("Misses", num(c.misses)),
        stat("Evictions", num(c.evictions)), stat("Size", c.size_bytes ? bytes(c.size_bytes) : "—")));
    const states = n.jobs_by_state || {};
    document.getElementById("job-states").replaceChildren(h("div", { class: "stats" },
      ["queued", "running", "failed", "done", "cancelled"].map((k) => stat(k[0].toUpperCase() + k.slice(1), num(states[k] || 0)))));
  }

  function renderStatements(st) {
    document.getElementById("stmt-source").textContent =
      "by total time · " + (st.source === "pg_stat_statements" ? "from pg_stat_statements" : "every process, flushed every 10 s");
    const box = document.getElementById("statements");
    if (!st.rows.length) {
      box.replaceChildren(h("div", { class: "empty-state" }, "No statements recorded yet."));
      return;
    }
    box.replaceChildren(h("table", {},
      h("thead", {}, h("tr", {}, h("th", {}, "Statement"), h("th", { class: "num" }, "Calls"), h("th", { class: "num" }, "Total ms"),
        h("th", { class: "num" }, "Mean ms"), h("th", { class: "num" }, "Max ms"), h("th", { class: "num" }, "Rows"))),
      h("tbody", {}, st.rows.map((r) => h("tr", {},
        h("td", { class: "query", title: r.query }, h("code", {}, r.query)),
        h("td", { class: "num" }, num(r.calls)),
        h("td", { class: "num" }, ms(r.total_ms)),
        h("td", { class: "num" }, ms(r.mean_ms)),
        h("td", { class: "num" }, ms(r.max_ms)),
        h("td", { class: "num" }, num(r.rows)))))));
  }

  // -- the loop ---------------------------------------------------------------------------

  async function refresh() {
    let r;
    try {
      r = await fetch("/api/admin/overview", { credentials: "same-origin", headers: { Accept: "application/json" } });
    } catch (e) {
      document.getElementById("status").textContent = "server unreachable";
      document.getElementById("status").className = "pill bad";
      return;
    }
    if (r.status === 401 || r.status === 403) { window.location.reload(); return; }
    if (!r.ok) { toast("Could not load the numbers: " + r.status, true); return; }
    last = await r.json();
    renderKpis(last.now);
    renderCharts(last.history);
    renderFailed(last.failed_jobs);
    renderQueues(last.queues || []);
    renderCache(last.now);
    renderStatements(last.statements);
    document.getElementById("updated").textContent = "updated " + new Date(last.generated_at * 1000).toLocaleTimeString();
    document.body.dataset.loaded = "true";
  }

  let resizeTimer = 0;
  window.addEventListener("resize", () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => { if (last) renderCharts(last.history); }, 120);
  });
  document.addEventListener("DOMContentLoaded", () => {
    refresh();
    setInterval(refresh, REFRESH_MS);
  });
})();

// The Podium console: reads GET /admin/overview, /admin/history and /metrics
// every few seconds and acts through the admin API. The admin token lives in
// sessionStorage (this tab only) and travels as a Bearer header, never in a
// URL. Everything the server sends is put on the page as text (no innerHTML).
"use strict";
(function () {
  const REFRESH_MS = 3000;
  const TOKEN_KEY = "podium-admin-token";
  const $ = (id) => document.getElementById(id);
  const BLUE = "#0072b2", ORANGE = "#b35c00", VERMILLION = "#c0392b";

  let token = sessionStorage.getItem(TOKEN_KEY) || "";
  let adminReadable = false;
  let refreshing = false;

  // ---- small helpers ------------------------------------------------------
  function h(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      node.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    }
    return node;
  }
  const num = (v, digits) => (v === null || v === undefined || !Number.isFinite(v) ? "–" : v.toFixed(digits));
  const pct = (v) => (v === null || v === undefined || !Number.isFinite(v) ? "–" : `${(v * 100).toFixed(1)}%`);
  const ms = (v) => (v === null || v === undefined ? "–" : v < 10 ? `${v.toFixed(2)} ms` : `${v.toFixed(0)} ms`);
  const signed = (v, d) => (v === null || v === undefined ? "–" : `${v >= 0 ? "+" : ""}${v.toFixed(d)}`);
  function bytes(v) {
    if (v === null || v === undefined) return "–";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return `${v.toFixed(i ? 1 : 0)} ${units[i]}`;
  }
  const when = (unixMs) => (unixMs ? new Date(unixMs).toLocaleString() : "–");
  const enc = encodeURIComponent;

  // ---- talking to the server ----------------------------------------------
  async function call(method, path, body) {
    const headers = { Accept: "application/json" };
    if (token) headers.Authorization = `Bearer ${token}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(path, {
        method, headers, credentials: "omit", cache: "no-store",
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (e) {
      return { ok: false, status: 0, json: { error: `the server did not answer (${e.message})` } };
    }
    const text = await response.text();
    let json = null;
    try { json = text ? JSON.parse(text) : null; } catch (_) { json = { text }; }
    return { ok: response.ok, status: response.status, json, text };
  }

  function parseMetrics(text) {
    const sums = {};
    for (const line of (text || "").split("\n")) {
      if (!line || line.startsWith("#")) continue;
      const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
      if (!m) continue;
      const v = Number(m[3]);
      if (Number.isFinite(v)) sums[m[1]] = (sums[m[1]] || 0) + v;
    }
    return sums;
  }

  // ---- actions --------------------------------------------------------------
  // ask(title, text, fields) resolves to the fields' values on Confirm, or null.
  function ask(title, text, fields) {
    const dialog = $("dialog");
    $("dialog-title").textContent = title;
    $("dialog-text").textContent = text;
    const box = $("dialog-fields");
    box.replaceChildren();
    const inputs = (fields || []).map((f, i) => {
      const id = `dialog-field-${i}`;
      const input = f.options
        ? h("select", { id }, f.options.map((o) => h("option", { value: o.value, text: o.label })))
        : h("input", { id, type: f.type || "text", value: f.value, min: f.min, step: f.step, inputmode: f.type === "number" ? "decimal" : null });
      box.append(h("label", { for: id, text: f.label }), input);
      return input;
    });
    return new Promise((resolve) => {
      const done = (result) => {
        $("dialog-ok").onclick = null;
        $("dialog-cancel").onclick = null;
        dialog.onclose = null;
        if (dialog.open) dialog.close();
        resolve(result);
      };
      $("dialog-ok").onclick = () => done(inputs.map((i) => i.value));
      $("dialog-cancel").onclick = () => done(null);
      dialog.onclose = () => done(null);
      dialog.showModal();
      (inputs[0] || $("dialog-ok")).focus();
    });
  }

  function showAnswer(result, describe) {
    const box = $("answer");
    box.hidden = false;
    if (result.ok) {
      box.className = "ok";
      let words;
      try { words = describe(result.json); } catch (_) { words = JSON.stringify(result.json); }
      box.textContent = `Done: ${words}`;
    } else {
      box.className = "refused";
      const why = (result.json && (result.json.error || result.json.text)) || result.text || "no reason given";
      const hint = result.status === 401 ? " The server did not accept the admin token: check it and enter it again." : "";
      box.textContent = `Refused (HTTP ${result.status}): ${why}${hint}`;
    }
  }

  async function act(method, path, body, describe) {
    const result = await call(method, path, body);
    showAnswer(result, describe);
    await refresh();
  }

  const swapWords = (o) =>
    `${o.model}@${o.alias} now serves version ${o.version}` +
    (o.from_version ? ` (was ${o.from_version})` : "") +
    (o.swapped ? `; loaded in ${ms(o.load_ms)}, validated in ${ms(o.validate_ms)}, warmed in ${ms(o.warm_ms)}.` : "; it already did.");

  async function setVersion(slot) {
    const values = await ask(`Set ${slot.model}@${slot.alias}`,
      `Point alias "${slot.alias}" of model "${slot.model}" at another version. Traffic moves once the version is loaded and warm; calls in flight finish on the old one.`,
      [{ label: "Version", type: "number", min: 1, step: 1, value: slot.registry_version }]);
    if (!values) return;
    const version = Number(values[0]);
    if (!Number.isInteger(version) || version < 1) {
      showAnswer({ ok: false, status: 0, json: { error: `"${values[0]}" is not a version number (a whole number from 1)` } });
      return;
    }
    await act("PUT", `/admin/models/${enc(slot.model)}/aliases/${enc(slot.alias)}`, { version }, swapWords);
  }

  async function rollBack(slot) {
    const values = await ask(`Roll back ${slot.model}@${slot.alias}`,
      `Move alias "${slot.alias}" of model "${slot.model}" back to the version it served before version ${slot.registry_version}.`, []);
    if (!values) return;
    await act("POST", `/admin/models/${enc(slot.model)}/aliases/${enc(slot.alias)}/rollback`, undefined, swapWords);
  }

  async function changeWeights(endpoint) {
    const values = await ask(`Weights of ${endpoint.name}`,
      "Each arm gets this share of the calls (weights are relative: 90 and 10 is 90% and 10%). The change applies to the next call and is not written to the config file.",
      endpoint.arms.map((a) => ({ label: `${a.alias}`, type: "number", min: 0, step: "any", value: a.weight })));
    if (!values) return;
    const arms = endpoint.arms.map((a, i) => ({ alias: a.alias, weight: Number(values[i]) }));
    await act("PUT", `/admin/endpoints/${enc(endpoint.name)}/traffic`, { arms },
      (j) => `${j.endpoint.name} now splits ${j.endpoint.arms.map((a) => `${a.alias} ${a.weight}`).join(", ")}.`);
  }

  async function promote(endpoint, readout) {
    const values = await ask(`Promote on ${endpoint.name}`,
      `Move "${readout.baseline}" to the version the challenger serves, if the experiment's readout allows it.`,
      [{ label: "Only if the challenger is", options: [
        { value: "better", label: "better than the baseline (clear evidence)" },
        { value: "not_worse", label: "not worse than the baseline" }] }]);
    if (!values) return;
    await act("POST", `/admin/experiments/${enc(endpoint.name)}/promote`, { condition: values[0] },
      (p) => `promoted ${p.arm} on ${p.endpoint}: ${swapWords(p.swap)}`);
  }

  async function rollout(endpoint, action) {
    const values = await ask(`${action === "stop" ? "Stop" : "Resume"} the rollout of ${endpoint.name}`,
      action === "stop" ? "The weights stay as they are now; no further steps are taken until you resume." : "The rollout continues from its current step.", []);
    if (!values) return;
    await act("POST", `/admin/experiments/${enc(endpoint.name)}/rollout/${action}`, undefined,
      (j) => `rollout ${j.rollout} of ${j.endpoint} accepted.`);
  }

  // key: names the button across refreshes, so that keyboard focus survives them.
  function actionButton(label, key, handler) {
    return h("button", {
      type: "button", class: "action", disabled: !token, "data-key": key,
      title: token ? null : "Enter the admin token to enable actions",
      onclick: handler, text: label,
    });
  }

  // ---- rendering ------------------------------------------------------------
  function badge(kind, text) { return h("span", { class: `badge ${kind}`, text }); }

  function armsByEndpoint(traffic) {
    const map = {};
    for (const t of (traffic && traffic.arms) || []) (map[t.endpoint] = map[t.endpoint] || {})[t.arm] = t.points;
    return map;
  }

  function armCard(endpoint, arm, points, totalRequests, totalWeight, slot, stopped) {
    const requests = points.reduce((s, p) => s + p.requests, 0);
    const errors = points.reduce((s, p) => s + p.errors, 0);
    // The last six buckets: the last minute (the newest one still filling).
    const lastMinute = points.slice(-6).reduce((s, p) => s + p.requests, 0);
    const latest = [...points].reverse().find((p) => p.p50_ms !== null) || null;
    const version = slot ? (slot.serving_version ? `v${slot.serving_version}` : "not serving") : "unknown alias";
    const title = h("h4", {}, `${arm.alias} → ${version} `,
      slot && slot.state !== "serving" ? badge("warn", `⚠ ${slot.state}`) : null,
      stopped ? badge("bad", "✖ stopped by guardrail") : null);
    const field = (name, label, text) => h("div", {}, h("dt", { text: label }), h("dd", { "data-field": name, text }));
    const numbers = h("dl", { class: "numbers" },
      field("weight", "weight", pct(totalWeight ? arm.weight / totalWeight : null)),
      field("share", "observed share", pct(totalRequests ? requests / totalRequests : null)),
      field("calls", "calls (window)", String(requests)),
      field("rate", "calls/s (1 min)", num(lastMinute / 60, 2)),
      field("errors", "errors", requests ? `${pct(errors / requests)} (${errors})` : "–"),
      field("p50", "p50", latest ? ms(latest.p50_ms) : "–"),
      field("p99", "p99", latest ? ms(latest.p99_ms) : "–"));
    const rate = points.map((p) => p.requests_per_s);
    const errorRate = points.map((p) => (p.requests ? (100 * p.errors) / p.requests : null));
    return h("div", { class: "arm", "data-arm": arm.alias },
      title, numbers,
      h("p", { class: "chart-label", text: "calls per second" }),
      PodiumChart.lines([{ values: rate, color: BLUE }], { title: `${arm.alias}: calls per second, last minutes`, format: (v) => `${v}/s` }),
      h("p", { class: "chart-label", text: "errors (% of calls)" }),
      PodiumChart.lines([{ values: errorRate, color: VERMILLION }], { title: `${arm.alias}: share of calls that failed`, format: (v) => `${v}%` }),
      h("p", { class: "chart-label" }, "latency: ", h("span", { class: "legend-p50", text: "p50 (solid)" }), " ", h("span", { class: "legend-p99", text: "p99 (dashed)" })),
      PodiumChart.lines([
        { values: points.map((p) => p.p50_ms), color: BLUE },
        { values: points.map((p) => p.p99_ms), color: ORANGE, dashed: true },
      ], { title: `${arm.alias}: latency p50 and p99 in milliseconds`, format: (v) => `${v} ms` }));
  }

  const DECISIONS = {
    better: (c, r) => `${c.arm} is better than ${c.baseline}: ${r.metric} differs by ${signed(c.diff, 4)} (${r.confidence * 100}% sure it is between ${signed(c.ci_low, 4)} and ${signed(c.ci_high, 4)}). This is unlikely to be chance.`,
    worse: (c, r) => `${c.arm} is worse than ${c.baseline}: ${r.metric} differs by ${signed(c.diff, 4)} (${r.confidence * 100}% sure it is between ${signed(c.ci_low, 4)} and ${signed(c.ci_high, 4)}). This is unlikely to be chance.`,
    no_difference_yet: (c, r) => `No clear difference yet between ${c.arm} and ${c.baseline} (${r.metric} differs by ${signed(c.diff, 4)}, plausibly anywhere from ${signed(c.ci_low, 4)} to ${signed(c.ci_high, 4)}). More data may tell.`,
    insufficient_data: (c, r) => `Not enough labelled calls yet to compare ${c.arm} with ${c.baseline}: each needs at least ${r.min_samples}.`,
    srm_failed: (c) => `Comparison of ${c.arm} with ${c.baseline} withheld: the traffic split does not match the weights, so the numbers cannot be trusted.`,
  };

  function readoutBlock(r) {
    if (r.error) return h("div", { class: "readout" }, h("p", { text: r.error }));
    const rows = r.arms.map((a) => h("p", {},
      h("strong", { text: `${a.arm}: ` }),
      a.metric.value === null
        ? `no ${r.metric} yet (${a.feedback} labelled calls)`
        : `${r.metric} ${num(a.metric.value, 4)} (${r.confidence * 100}% sure it is between ${num(a.metric.ci_low, 4)} and ${num(a.metric.ci_high, 4)}), from ${a.feedback} labelled calls`));
    const srm = r.srm.ok
      ? h("p", {}, badge("good", "✔ split OK"), " The traffic split matches the weights.")
      : h("p", {}, badge("bad", "⚠ sample ratio mismatch"), ` The split does not match the weights (p = ${r.srm.p_value.toExponential(2)}): look for clients that choose their arm, or a recent weight change.`);
    const decisions = r.comparisons.map((c) => {
      const kind = c.decision === "better" ? "good" : c.decision === "worse" || c.decision === "srm_failed" ? "bad" : "warn";
      const words = (DECISIONS[c.decision] || ((x) => `decision: ${x.decision}`))(c, r);
      return h("p", { class: "decision" }, badge(kind, c.decision.replace(/_/g, " ")), " ", words);
    });
    const rollout = r.rollout ? h("p", {}, h("strong", { text: "Rollout: " }),
      `${r.rollout.arm} ${r.rollout.state}` +
      (r.rollout.weight !== null ? ` at weight ${r.rollout.weight}` : "") +
      (r.rollout.step !== null ? ` (step ${r.rollout.step + 1} of ${r.rollout.steps.length})` : "") +
      (r.rollout.next_step_at ? `; next step not before ${new Date(r.rollout.next_step_at).toLocaleTimeString()}` : "") +
      (r.rollout.waiting_for ? `; waiting for ${r.rollout.waiting_for}` : "") +
      (r.rollout.stopped_reason ? `; stopped: ${r.rollout.stopped_reason}` : "")) : null;
    const stopped = r.stopped_arms.map((s) => h("p", {}, badge("bad", "✖ guardrail"), ` ${s.arm} stopped at ${new Date(s.at).toLocaleTimeString()}: ${s.reason}`));
    return h("div", { class: "readout" },
      h("p", {}, h("strong", { text: `Experiment ${r.experiment}` }), ` — ${r.metric}, baseline ${r.baseline}, counting since ${new Date(r.since).toLocaleString()}`),
      rows, srm, decisions, stopped, rollout,
      r.warnings.map((w) => h("p", {}, badge("warn", "⚠"), ` ${w}`)));
  }

  function renderEndpoints(o) {
    const slots = {};
    for (const s of o.status.slots) slots[`${s.model}@${s.alias}`] = s;
    const traffic = armsByEndpoint(o.traffic);
    $("window").textContent = `${Math.round(o.traffic.window_seconds / 60)} minutes`;
    const list = o.endpoints.map((e) => {
      const readout = o.experiments[e.name];
      const points = traffic[e.name] || {};
      const empty = Array.from({ length: o.traffic.window_seconds / o.traffic.bucket_seconds }, () => ({ requests: 0, errors: 0, requests_per_s: 0, p50_ms: null, p99_ms: null }));
      const total = e.arms.reduce((s, a) => s + (points[a.alias] || []).reduce((t, p) => t + p.requests, 0), 0);
      const totalWeight = e.arms.reduce((s, a) => s + a.weight, 0);
      const stopped = new Set(((readout && readout.stopped_arms) || []).map((s) => s.arm));
      const meta = [`model ${e.model}`];
      if (e.sticky_key) meta.push(`sticky by ${Object.keys(e.sticky_key)[0]} ${Object.values(e.sticky_key)[0]}`);
      meta.push(e.shadow ? `shadow: ${e.shadow.alias} gets a copy of ${pct(e.shadow.fraction)} of calls` : "no shadow");
      if (e.timeout_ms) meta.push(`timeout ${e.timeout_ms} ms`);
      const actions = [actionButton("Change weights…", `weights:${e.name}`, () => changeWeights(e))];
      if (readout && !readout.error) actions.push(actionButton("Promote challenger…", `promote:${e.name}`, () => promote(e, readout)));
      if (readout && readout.rollout) {
        actions.push(actionButton("Stop rollout", `stop:${e.name}`, () => rollout(e, "stop")));
        actions.push(actionButton("Resume rollout", `resume:${e.name}`, () => rollout(e, "resume")));
      }
      return h("article", { class: "card endpoint", "data-endpoint": e.name },
        h("h3", { text: e.name }),
        h("p", { class: "meta", text: meta.join(" · ") }),
        h("div", { class: "arms" }, e.arms.map((a) => armCard(e, a, points[a.alias] || empty, total, totalWeight, slots[`${e.model}@${a.alias}`], stopped.has(a.alias)))),
        readout ? readoutBlock(readout) : null,
        h("div", { class: "actions" }, actions));
    });
    $("endpoint-list").replaceChildren(...(list.length ? list : [h("p", { text: "No endpoints are configured (--config): models are served under their own names." })]));
  }

  function renderModels(o) {
    const st = o.status;
    const reg = st.registry || {};
    $("models-summary").textContent =
      `Memory estimate ${bytes(st.memory_estimate_bytes)}` +
      (st.memory_limit_bytes ? ` of ${bytes(st.memory_limit_bytes)} allowed` : " (no limit set)") +
      ` · registry (${reg.kind || "?"}): ${reg.state === "ok" ? "✔ reachable" : `⚠ ${reg.state || "unknown"}`}` +
      (reg.consecutive_failures ? `, ${reg.consecutive_failures} failed reads in a row` : "") +
      (reg.last_error ? ` — ${reg.last_error}` : "");
    const head = h("tr", {}, ["Model", "Alias", "Serving", "Registry says", "State", "Loaded", "Warm previous", "Memory", "In flight", "Last error", ""].map((t) => h("th", { scope: "col", text: t })));
    const rows = st.slots.map((s) => h("tr", { "data-slot": `${s.model}@${s.alias}` },
      h("td", { text: s.model }), h("td", { text: s.alias }),
      h("td", { class: "num", text: s.serving_version ? `v${s.serving_version}` : "–" }),
      h("td", { class: "num", text: `v${s.registry_version}` }),
      h("td", {}, s.state === "serving" ? badge("good", "✔ serving") : badge("warn", `⚠ ${s.state}`)),
      h("td", { text: when(s.loaded_at_unix_ms) }),
      h("td", { text: s.previous_versions.length ? s.previous_versions.map((v) => `v${v}`).join(", ") : "none" }),
      h("td", { class: "num", text: bytes(s.memory_estimate_bytes) }),
      h("td", { class: "num", text: String(s.in_flight) }),
      h("td", { text: [s.last_error, s.drift && `files changed on disk: ${s.drift}`].filter(Boolean).join(" · ") || "–" }),
      h("td", {}, h("div", { class: "actions" },
        actionButton("Set version…", `set:${s.model}@${s.alias}`, () => setVersion(s)),
        actionButton("Roll back", `rollback:${s.model}@${s.alias}`, () => rollBack(s))))));
    $("models-table").replaceChildren(h("thead", {}, head), h("tbody", {}, rows));
    const select = $("history-model");
    const models = [...new Set(st.slots.map((s) => s.model))].sort();
    const have = [...select.options].map((opt) => opt.value).filter(Boolean);
    if (models.join("\n") !== have.join("\n")) {
      const chosen = select.value;
      select.replaceChildren(h("option", { value: "", text: "all models" }), ...models.map((m) => h("option", { value: m, text: m })));
      select.value = models.includes(chosen) ? chosen : "";
    }
  }

  function renderHistory(events) {
    const head = h("tr", {}, ["When", "Model", "Alias / endpoint", "What", "Who", "Result", "Swap took"].map((t) => h("th", { scope: "col", text: t })));
    const rows = [...events].reverse().map((e) => {
      const what = e.arms ? `weights ${e.arms.map((a) => `${a.alias} ${a.weight}`).join(", ")}` :
        `${e.action.replace(/_/g, " ")}${e.from_version || e.to_version ? ` v${e.from_version || "–"} → v${e.to_version || "–"}` : ""}${e.rollback ? " (rollback)" : ""}`;
      const took = [e.load_ms, e.validate_ms, e.warm_ms].some((x) => x !== undefined)
        ? ms((e.load_ms || 0) + (e.validate_ms || 0) + (e.warm_ms || 0)) : "–";
      return h("tr", {},
        h("td", { text: when(e.unix_ms) }), h("td", { text: e.model }),
        h("td", { text: e.endpoint ? `${e.alias || ""} ${e.endpoint}`.trim() : e.alias }),
        h("td", { text: what }), h("td", { text: e.by }),
        h("td", { text: [e.result, e.error, e.why].filter(Boolean).join(": ") }),
        h("td", { class: "num", text: took }));
    });
    $("history-table").replaceChildren(h("thead", {}, head),
      h("tbody", {}, rows.length ? rows : [h("tr", {}, h("td", { colspan: 7, text: "No changes recorded yet." }))]));
  }

  function renderTable(metrics) {
    const box = $("table-stats");
    const has = Object.keys(metrics).some((k) => k.startsWith("podium_table_"));
    if (!has) {
      box.replaceChildren(h("dt", { text: "Table" }), h("dd", { text: "not written by this server (start it with --table-dir)" }));
      return;
    }
    const v = (k) => metrics[k] || 0;
    const oldest = v("podium_table_oldest_unflushed_seconds");
    box.replaceChildren(
      h("dt", { text: "Rows written" }), h("dd", { text: String(v("podium_table_rows_written_total")) }),
      h("dt", { text: "Rows dropped" }), h("dd", { text: `${v("podium_table_rows_dropped_total")}${v("podium_table_rows_dropped_total") ? " ⚠ (see podium_table_rows_dropped_total by reason)" : ""}` }),
      h("dt", { text: "Queued, not yet written" }), h("dd", { text: `${v("podium_table_queue_rows")} rows (${bytes(v("podium_table_queue_bytes"))})` }),
      h("dt", { text: "Oldest unflushed row" }), h("dd", { text: oldest ? `${oldest.toFixed(1)} s old` : "none waiting" }),
      h("dt", { text: "Files written" }), h("dd", { text: String(v("podium_table_files_total")) }));
  }

  function renderMode(status) {
    const mode = $("mode");
    if (token) {
      mode.textContent = status === 401
        ? "⚠ The server refused this token (401): enter the right one."
        : "Actions enabled with your token (kept in this browser tab only; Forget removes it).";
    } else if (status === 401) {
      mode.textContent = "Read-only: this server's admin API needs a token to show status and to act. Until you enter it, only the inference table numbers (from /metrics) are shown.";
    } else if (status === 404) {
      mode.textContent = "Read-only: this listener serves no admin API (it is reachable from other hosts and no --admin-token is set).";
    } else {
      mode.textContent = adminReadable
        ? "Read-only: enter the admin token to change anything (on a loopback listener without a configured token, any text unlocks actions)."
        : "Read-only.";
    }
  }

  async function refresh() {
    if (refreshing) return;
    refreshing = true;
    try {
      const model = $("history-model").value;
      const [ov, hist, met] = await Promise.all([
        call("GET", "/admin/overview"),
        call("GET", `/admin/history?limit=100${model ? `&model=${enc(model)}` : ""}`),
        fetch("/metrics", { credentials: "omit", cache: "no-store" }).then((r) => r.text()).catch(() => ""),
      ]);
      adminReadable = ov.ok;
      renderMode(ov.status);
      renderTable(parseMetrics(met));
      if (ov.ok) {
        const overview = ov.json;
        const focused = document.activeElement && document.activeElement.dataset
          ? document.activeElement.dataset.key : undefined;
        renderEndpoints(overview);
        renderModels(overview);
        if (focused) {
          const again = [...document.querySelectorAll("button.action")].find((b) => b.dataset.key === focused);
          if (again) again.focus();
        }
        if (hist.ok) renderHistory(hist.json.events || []);
        $("refreshed").textContent = `Updated ${new Date().toLocaleTimeString()} · refreshes every ${REFRESH_MS / 1000} s`;
      } else {
        const why = (ov.json && ov.json.error) || `HTTP ${ov.status}`;
        $("refreshed").textContent = `Status not shown: ${why}`;
        for (const id of ["endpoint-list", "models-table", "history-table"]) $(id).replaceChildren();
        $("models-summary").textContent = "";
      }
    } finally {
      refreshing = false;
    }
  }

  // ---- start ------------------------------------------------------------------
  $("token-use").addEventListener("click", () => {
    token = $("token").value.trim();
    $("token").value = "";
    if (token) sessionStorage.setItem(TOKEN_KEY, token); else sessionStorage.removeItem(TOKEN_KEY);
    refresh();
  });
  $("token").addEventListener("keydown", (e) => { if (e.key === "Enter") $("token-use").click(); });
  $("token-forget").addEventListener("click", () => {
    token = "";
    sessionStorage.removeItem(TOKEN_KEY);
    refresh();
  });
  $("history-model").addEventListener("change", refresh);
  refresh();
  setInterval(refresh, REFRESH_MS);
})();

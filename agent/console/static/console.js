// The defi-agent dashboard: reads the JSON API with the bearer token and follows the event
// stream. The token comes from the URL fragment (#token=..., never sent to a server) or from
// localStorage; it travels only in the Authorization header.
"use strict";
(function () {
  const KEY = "defi-agent-console-token";
  const $ = (id) => document.getElementById(id);
  let token = null;
  const charts = {};

  function takeToken() {
    const match = /(?:^#|&)token=([^&]+)/.exec(location.hash);
    if (match) {
      localStorage.setItem(KEY, decodeURIComponent(match[1]));
      history.replaceState(null, "", location.pathname + location.search);
    }
    token = localStorage.getItem(KEY);
  }

  async function api(path, options) {
    const init = Object.assign({ headers: {} }, options || {});
    init.headers = Object.assign({ Authorization: "Bearer " + token }, init.headers);
    const response = await fetch(path, init);
    if (response.status === 401) { askToken("The token was refused."); throw new Error("401"); }
    const body = await response.json();
    if (!response.ok) throw new Error(body.detail || response.statusText);
    return body;
  }

  function askToken(message) {
    localStorage.removeItem(KEY);
    token = null;
    $("login").hidden = false;
    showError(message || "");
  }

  function showError(message) { $("error").hidden = !message; $("error").textContent = message || ""; }

  const usd = (v) => v === null || v === undefined ? "–" :
    (v < 0 ? "-$" : "$") + Math.abs(v).toLocaleString(undefined, { maximumFractionDigits: 2, minimumFractionDigits: 2 });
  const num = (v, digits) => v === null || v === undefined ? "–" :
    Number(v).toLocaleString(undefined, { maximumSignificantDigits: digits || 6 });
  const when = (seconds) => new Date(seconds * 1000).toLocaleTimeString();

  function cell(row, text, className) {
    const td = document.createElement("td");
    td.textContent = text;
    if (className) td.className = className;
    row.appendChild(td);
    return td;
  }

  function fill(tbody, rows, render) {
    tbody.replaceChildren(...rows.map((item) => { const tr = document.createElement("tr"); render(tr, item); return tr; }));
  }

  // -- panels ----------------------------------------------------------------------------------
  async function loadStatus() {
    const status = await api("/api/status");
    const state = $("state");
    state.textContent = status.state + (status.pause_reason && status.state !== "trading" ? ": " + status.pause_reason : "");
    state.className = "pill " + status.state;
    state.dataset.state = status.state;
    $("block").textContent = status.block === null ? "" : "block " + status.block +
      " · lag " + status.head_lag_blocks + " blocks" +
      (status.head_lag_s === null ? "" : " (" + num(status.head_lag_s, 1) + " s)") +
      " · " + status.heads_skipped + " heads skipped";
  }

  async function loadRisk() {
    const risk = await api("/api/risk");
    const gauge = (id, value, limit, label) => {
      $("g-" + id).value = limit > 0 ? Math.min(1, Math.max(0, value / limit)) : 0;
      $("g-" + id).high = 0.7; $("g-" + id).optimum = 0;
      $("v-" + id).textContent = label;
    };
    gauge("drawdown", risk.drawdown_pct, risk.max_drawdown_pct, num(risk.drawdown_pct, 3) + "%");
    $("g-drawdown").title = "trading halts at " + risk.max_drawdown_pct + "% drawdown";
    const loss = Math.max(0, -risk.daily_pnl_usd);
    gauge("daily", loss, risk.daily_loss_limit_usd, usd(risk.daily_pnl_usd));
    $("g-daily").title = "today's realised PnL; trading halts at -" + usd(risk.daily_loss_limit_usd);
    gauge("exposure", risk.total_exposure_usd, risk.max_total_exposure_usd, usd(risk.total_exposure_usd));
    $("g-exposure").title = "limit " + usd(risk.max_total_exposure_usd);
    $("equity").textContent = "Equity " + usd(risk.equity_usd);
  }

  function plot(id, opts, data) {
    const target = $(id);
    if (typeof uPlot === "undefined") { target.textContent = "(chart library not installed: run make setup)"; return; }
    const width = Math.max(260, target.clientWidth - 8);
    if (charts[id] && charts[id].series.length === opts.series.length) {
      charts[id].setData(data);
      if (Math.abs(charts[id].width - width) > 4) charts[id].setSize({ width: width, height: opts.height });
      return;
    }
    if (charts[id]) charts[id].destroy();
    charts[id] = new uPlot(Object.assign({ width: width }, opts), data, target);
  }

  async function loadRuns() {
    const runs = await api("/api/runs?limit=5");
    const run = runs.find((r) => r.current) || runs[0];
    if (!run) return;
    $("pnl-summary").textContent = "run #" + run.id + " (" + run.mode + "): " + run.fills +
      " fills · predicted " + usd(run.predicted_profit_usd) + " · realised " + usd(run.realised_profit_usd);
    fill($("runs").tBodies[0], runs.filter((r) => r !== run), (tr, r) => {
      cell(tr, "#" + r.id + " " + r.mode); cell(tr, new Date(r.started_at * 1000).toLocaleString());
      cell(tr, r.fills + " fills"); cell(tr, usd(r.realised_profit_usd), "num");
    });
    const points = run.pnl.filter((p) => p.block !== null);
    // From zero at the run's first block, so one fill is a line rather than a dot.
    if (points.length && run.equity.length && run.equity[0].block < points[0].block) {
      points.unshift({ block: run.equity[0].block, predicted_usd: 0, realised_usd: 0 });
    }
    if (points.length) {
      plot("pnl-chart", {
        height: 200, scales: { x: { time: false } }, axes: [{ stroke: "#8b98a5" }, { stroke: "#8b98a5", size: 80 }],
        series: [{ label: "block" },
          { label: "predicted $", stroke: "#8b98a5", dash: [4, 4] },
          { label: "realised $", stroke: "#3fb950", width: 2 }],
      }, [points.map((p) => p.block), points.map((p) => p.predicted_usd), points.map((p) => p.realised_usd)]);
    } else if (run.equity.length) {
      plot("pnl-chart", {
        height: 200, scales: { x: { time: false } }, axes: [{ stroke: "#8b98a5" }, { stroke: "#8b98a5", size: 80 }],
        series: [{ label: "block" }, { label: "equity $", stroke: "#58a6ff", width: 2 }],
      }, [run.equity.map((p) => p.block), run.equity.map((p) => p.equity_usd)]);
    }
  }

  async function loadTrades() {
    const trades = await api("/api/trades?limit=100");
    fill($("trades").tBodies[0], trades, (tr, t) => {
      tr.dataset.tradeId = t.id;
      tr.dataset.status = t.status;
      cell(tr, when(t.created_at));
      cell(tr, t.strategy);
      cell(tr, t.token_in + " " + num(t.amount_in_units, 4) + " · " + t.route);
      const pending = t.finality === "pending" ? " · pending confirmation" : "";
      cell(tr, t.status + pending, "status-" + t.status).title = t.detail || "";
      cell(tr, usd(t.predicted_profit_usd), "num");
      cell(tr, usd(t.realised_profit_usd), "num");
      const hash = t.tx_hash || t.tx_hashes[t.tx_hashes.length - 1] || "";
      const td = cell(tr, hash ? hash.slice(0, 10) + "…" : "–", "hash");
      td.title = hash;
      td.dataset.txHash = hash;
    });
  }

  async function loadRefusals() {
    const view = await api("/api/opportunities?bucket_s=60");
    const totals = Object.entries(view.totals);
    fill($("refusals").tBodies[0], totals.length ? totals : [["no refusals yet", null]], (tr, [reason, count]) => {
      cell(tr, reason); cell(tr, count === null ? "" : String(count), "num");
    });
    const reasons = totals.slice(0, 4).map(([reason]) => reason);
    if (view.buckets.length && reasons.length) {
      const colours = ["#d29922", "#f85149", "#58a6ff", "#a371f7"];
      plot("refusal-chart", {
        height: 130, legend: { show: true }, axes: [{ stroke: "#8b98a5" }, { stroke: "#8b98a5" }],
        series: [{}].concat(reasons.map((r, i) => ({ label: r, stroke: colours[i], width: 2 }))),
      }, [view.buckets.map((b) => b.start)].concat(reasons.map((r) => view.buckets.map((b) => b.refusals[r] || 0))));
    }
  }

  async function loadPools() {
    const view = await api("/api/pools");
    fill($("pools").tBodies[0], view.pools, (tr, p) => {
      cell(tr, p.pair + (p.fee_pips ? " " + p.fee_pips / 10000 + "%" : ""));
      cell(tr, p.dex);
      cell(tr, num(p.price, 6) + (p.stale ? " (stale)" : ""), "num");
    });
  }

  let priceToken = "WETH";
  async function loadPrices() {
    const view = await api("/api/prices?token=" + encodeURIComponent(priceToken));
    const select = $("price-token");
    if (select.options.length !== view.tokens.length) {
      select.replaceChildren(...view.tokens.map((t) => new Option(t, t, false, t === view.token)));
    }
    const card = $("prices-card");
    card.dataset.fills = String(view.fills.length);
    card.dataset.grids = String(view.grids.length);
    if (view.points.length < 2) return;
    // Fills land on blocks the price was not recorded at: they join the x axis, marked at the
    // latest price before them.
    const fillAt = new Map(view.fills.map((f) => [f.block, f]));
    const priceAt = new Map(view.points.map((p) => [p.block, p.price_usd]));
    const blocks = Array.from(new Set([...priceAt.keys(), ...fillAt.keys()])).sort((a, b) => a - b);
    let latest = null;
    const price = [], marks = [];
    blocks.forEach((block) => {
      const here = priceAt.has(block) ? priceAt.get(block) : null;
      if (here !== null) latest = here;
      price.push(here);
      marks.push(fillAt.has(block) ? (here !== null ? here : latest) : null);
    });
    const series = [{ label: "block" }, { label: view.token + " $", stroke: "#58a6ff", width: 2, spanGaps: true },
      { label: "fills", stroke: "#3fb950", width: 0, paths: () => null, points: { show: true, size: 10, fill: "#3fb950" } }];
    const data = [blocks, price, marks];
    const captions = [view.fills.length + " fills (green)"];
    view.grids.forEach((grid) => {
      const levels = grid.levels.length <= 60 ? grid.levels : [];
      levels.forEach((level) => {
        series.push({ stroke: grid.stopped ? "#f85149" : "#a371f7", width: 1, dash: [3, 3], points: { show: false } });
        data.push(blocks.map(() => level));
      });
      captions.push(grid.strategy + " " + grid.pair + ": " + grid.levels.length + " levels " +
        num(grid.levels[0], 6) + "–" + num(grid.levels[grid.levels.length - 1], 6) +
        (grid.stopped ? " (stopped: the price left the range)" : ""));
    });
    $("price-caption").textContent = captions.join(" · ");
    plot("price-chart", { height: 200, legend: { show: false }, scales: { x: { time: false } },
      axes: [{ stroke: "#8b98a5" }, { stroke: "#8b98a5", size: 70 }], series: series }, data);
  }

  async function loadFeeds() {
    const view = await api("/api/feeds");
    const rows = Object.entries(view.ages_s).map(([source, age]) => [source, age, source in view.stale]);
    if (view.last_head !== null) rows.unshift(["rpc head #" + view.last_head, null, view.head_stalled]);
    fill($("feeds").tBodies[0], rows, (tr, [source, age, stale]) => {
      cell(tr, source);
      cell(tr, age === null ? "" : num(age, 3) + " s", "num");
      cell(tr, stale ? "stale" : "ok", stale ? "status-failed" : "status-filled");
    });
  }

  async function loadBalances() {
    const view = await api("/api/balances");
    fill($("balances").tBodies[0], view.balances, (tr, b) => {
      cell(tr, b.symbol); cell(tr, num(b.amount_units, 8), "num"); cell(tr, usd(b.value_usd), "num");
    });
    $("holders").replaceChildren(...view.by_holder.map((h) => {
      const li = document.createElement("li");
      li.dataset.role = h.role;
      li.textContent = h.role + " " + h.holder.slice(0, 8) + "… " + usd(h.value_usd);
      li.title = h.holder;
      return li;
    }));
  }

  function describe(e) {
    switch (e.kind) {
      case "trade_mined": return "filled " + e.strategy + " " + e.route + ": realised " + usd(e.realised_profit_usd) + " (predicted " + usd(e.predicted_profit_usd) + ")";
      case "trade_reverted": return "reverted " + e.strategy + ": " + e.reason;
      case "trade_failed": return "failed " + e.strategy + ": " + e.reason;
      case "trade_reorged": return "reorg " + e.outcome + " " + e.strategy + ": " + e.detail;
      case "control_action": return e.action + " by " + e.who + (e.detail ? ": " + e.detail : "");
      case "halt": return "HALT " + e.reason + (e.detail ? ": " + e.detail : "");
      case "feed_stale": return "feed stale: " + e.source + (e.error ? " (" + e.error + ")" : "");
      case "feed_fresh": return "feed back: " + e.source;
      case "head_stalled": return "chain head stalled at " + e.last_head;
      case "head_resumed": return "chain head resumed at " + e.number;
      case "strategy_failed": return "strategy " + e.strategy + " failed: " + e.error_class;
      case "source_failed": return e.source + " failed: " + e.error_class;
      default: return e.kind;
    }
  }

  async function loadAlerts() {
    const events = await api("/api/alerts?limit=100");
    $("alerts").replaceChildren(...events.map((e) => {
      const li = document.createElement("li");
      li.dataset.kind = e.kind;
      const time = document.createElement("time");
      time.textContent = when(e.at);
      li.append(time, describe(e));
      return li;
    }));
  }

  // -- refresh scheduling: each panel at most once per second, on the events that change it ----
  const panels = { status: loadStatus, risk: loadRisk, runs: loadRuns, trades: loadTrades,
    refusals: loadRefusals, pools: loadPools, prices: loadPrices, feeds: loadFeeds, balances: loadBalances, alerts: loadAlerts };
  const due = new Set();
  let timer = null;
  function refresh(...names) {
    names.forEach((n) => due.add(n));
    if (!timer) timer = setTimeout(flush, 250);
  }
  async function flush() {
    timer = null;
    const names = Array.from(due); due.clear();
    const results = await Promise.allSettled(names.map((n) => panels[n]()));
    const failed = results.find((r) => r.status === "rejected" && r.reason.message !== "401");
    showError(failed ? "Could not reach the agent: " + failed.reason.message : "");
  }
  const ON_EVENT = {
    tick: ["status", "risk", "refusals", "pools", "prices", "runs"],
    trade_sent: ["trades"], trade_mined: ["trades", "runs", "balances", "alerts", "risk", "prices"],
    trade_reverted: ["trades", "alerts"], trade_failed: ["trades", "alerts"],
    trade_reorged: ["trades", "runs", "balances", "alerts", "risk"],
    control_action: ["status", "risk", "alerts"], halt: ["status", "risk", "alerts"],
    feeds_checked: ["feeds"], feed_stale: ["feeds", "alerts"], feed_fresh: ["feeds", "alerts"],
    head_stalled: ["feeds", "alerts"], head_resumed: ["feeds", "alerts"],
    strategy_failed: ["alerts"], source_failed: ["alerts"],
  };

  let source = null;
  async function connect() {
    if (source) source.close();
    try {
      const { ticket } = await api("/api/events/ticket", { method: "POST" });
      source = new EventSource("/api/events?ticket=" + encodeURIComponent(ticket));
    } catch (e) { setTimeout(connect, 3000); return; }
    source.onopen = () => { $("live").textContent = "●"; $("live").dataset.live = "yes"; };
    source.onerror = () => {
      $("live").textContent = "○"; $("live").dataset.live = "no";
      source.close(); source = null;
      if (token) setTimeout(connect, 2000);  // a new ticket: the old one may have expired
    };
    Object.keys(ON_EVENT).forEach((kind) => source.addEventListener(kind, () => refresh(...ON_EVENT[kind])));
  }

  async function control(action, body) {
    try {
      await api("/api/control/" + action, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body || {}) });
      refresh("status", "risk", "alerts");
    } catch (e) { showError(action + " failed: " + e.message); }
  }

  function start() {
    $("login").hidden = true;
    refresh(...Object.keys(panels));
    connect();
    setInterval(() => refresh(...Object.keys(panels)), 15000);  // a missed event heals itself
  }

  $("price-token").addEventListener("change", (event) => {
    priceToken = event.target.value;
    if (charts["price-chart"]) { charts["price-chart"].destroy(); delete charts["price-chart"]; }
    refresh("prices");
  });
  $("pause").addEventListener("click", () => control("pause", { reason: "paused from the dashboard" }));
  $("resume").addEventListener("click", () => control("resume"));
  $("kill").addEventListener("click", () => {
    if (window.confirm("Kill the agent? Trading halts and the agent shuts down.")) control("kill", { confirm: "kill" });
  });
  $("login").addEventListener("submit", (event) => {
    event.preventDefault();
    localStorage.setItem(KEY, $("token").value.trim());
    token = localStorage.getItem(KEY);
    showError("");
    start();
  });

  takeToken();
  if (token) start(); else askToken();
})();

// meter-simulator dashboard: polls the control port's JSON API about once a second (one
// request for the page of meters shown, one more for the selected meter and, in a run of
// sites, one for its site), draws the selected meter's rate on a canvas and sends the
// buttons' changes. No framework, no build step, nothing fetched from elsewhere; every
// path is relative to the page.
"use strict";

(function () {
  const PAGE_SIZE = 50;
  const REFRESH_MS = 1000;
  const TIMEOUT_MS = 5000;
  const HISTORY_MS = 5 * 60 * 1000;
  const RECONNECTED_MS = 5000;

  // the readings of control-contract section 3, shown first in the details
  const HEADLINE = {
    electric: ["energy_import", "power_total", "voltage_l1", "voltage_l2", "voltage_l3",
      "current_l1", "current_l2", "current_l3", "frequency", "power_factor_total"],
    water: ["volume_total", "flow", "temperature", "pressure"],
    gas: ["volume_total", "flow", "temperature", "pressure"],
    inverter: ["inverter_power", "load_power", "pv_dc_power", "pv_ac_power", "battery_power",
      "battery_soc", "grid_power", "inverter_state"],
  };
  // what a meter's pins may set: a site's balance decides its grid meter's power and currents
  // and every reading of its inverter (the site's own pins set the load and the PV instead)
  const PINNABLE = {
    electric: ["power_total", "voltage_l1", "voltage_l2", "voltage_l3", "current_l1", "current_l2",
      "current_l3", "frequency", "power_factor_total", "power_factor_l1", "power_factor_l2",
      "power_factor_l3"],
    water: ["flow", "temperature", "pressure"],
    gas: ["flow", "temperature", "pressure"],
    inverter: [],
    "site-grid": ["voltage_l1", "voltage_l2", "voltage_l3", "frequency", "power_factor_total",
      "power_factor_l1", "power_factor_l2", "power_factor_l3"],
  };
  const PIN_NOTES = {
    inverter: "A site's balance decides its inverter's readings: pin the site's load or PV above.",
    "site-grid": "A site's balance decides its grid meter's power and currents: pin the site's load or PV above.",
  };
  const SITE_FLOWS = ["load", "pv_dc", "pv_ac", "battery", "inverter", "grid"];
  // a flow's direction by the sign of the value shown: [above 0, below 0, 0]
  const DIRECTIONS = {
    load: ["drawing", "", "none"],
    pv_dc: ["producing", "", "none"],
    pv_ac: ["producing", "", "none"],
    battery: ["discharging", "charging", "idle"],
    inverter: ["delivering", "drawing", "idle"],
    grid: ["import", "export", "none"],
  };
  const PRESETS = {
    "fault-delay": { type: "delay", delay_ms: 1000 },
    "fault-no-answer": { type: "no_answer" },
    "fault-busy": { type: "exception", code: 6 },
    "fault-freeze": { type: "freeze" },
  };

  // a reading as a plain decimal number: no unit, no grouping, no exponent, and at least as
  // precise as any register that carries it (12 significant digits)
  const decimal = new Intl.NumberFormat("en-US", { useGrouping: false, maximumSignificantDigits: 12 });
  function plain(value) {
    if (typeof value !== "number" || !isFinite(value)) return String(value);
    return value === 0 ? "0" : decimal.format(value);
  }
  const short = new Intl.NumberFormat("en-US", { useGrouping: false, maximumFractionDigits: 1 });
  const hundredths = new Intl.NumberFormat("en-US", { useGrouping: false, maximumFractionDigits: 2 });
  // a site's flow as a plain number rounded to its shown precision, never "-0"
  function rounded(value, format, scale) {
    const shown = Math.round(value * scale) / scale;
    return shown === 0 ? "0" : format.format(shown);
  }

  const state = {
    token: null, // from the URL's fragment or the form; kept in the page only, never stored
    needToken: false,
    offset: 0,
    count: 0,
    selected: null,
    pinKind: null, // the PINNABLE list the pin form offers
    sites: 0, // the run's sites (the summary's count)
    readOnly: null, // unknown until the first answer: the buttons wait for it
    connection: "connecting",
    lostSince: null,
    reconnectedAt: 0,
    rowIds: "",
    rows: new Map(), // meter id -> {tr, cells}
    detailKeys: "",
    detailCells: new Map(), // reading name -> value cell
    pinsShown: "",
    faultIds: null,
    faultTexts: new Map(), // fault id -> its text element
    actions: Promise.resolve(), // the buttons' requests, one at a time in click order
    history: new Map(), // meter id -> [[time ms, rate], ...] over the last 5 minutes
    rateUnit: "",
    timer: null,
    running: false,
    again: false,
  };

  const $ = (id) => document.getElementById(id);

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status; // 0: the control port could not be reached
    }
  }

  async function api(method, path, body) {
    const headers = {};
    if (state.token) headers.Authorization = "Bearer " + state.token;
    const init = { method, headers, cache: "no-store" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const controller = new AbortController();
    init.signal = controller.signal;
    const timer = setTimeout(() => controller.abort(), TIMEOUT_MS);
    let response;
    let document_ = null;
    try {
      response = await fetch(path, init);
      try {
        document_ = await response.json();
      } catch (error) {
        document_ = null;
      }
    } catch (error) {
      throw new ApiError(0, "cannot reach the control port");
    } finally {
      clearTimeout(timer);
    }
    if (!response.ok) {
      const message = document_ && document_.error ? document_.error : response.status + " " + response.statusText;
      throw new ApiError(response.status, message);
    }
    return document_;
  }

  function meterPath(id) {
    return "api/meters/" + encodeURIComponent(id);
  }

  function clock(time) {
    return new Date(time).toLocaleTimeString("en-GB");
  }

  // --- the connection line ---
  function setConnection(kind, text) {
    const line = $("connection");
    state.connection = kind;
    line.dataset.state = kind;
    line.textContent = text;
    document.body.classList.toggle("stale", kind === "lost");
  }

  function connected() {
    const now = Date.now();
    if (state.connection === "lost") state.reconnectedAt = now;
    if (now - state.reconnectedAt < RECONNECTED_MS) {
      setConnection("reconnected", "Reconnected to " + window.location.host + " at " + clock(state.reconnectedAt) + ".");
    } else {
      setConnection("ok", "Connected to " + window.location.host + ", updated " + clock(now) + ".");
    }
    state.lostSince = null;
  }

  function lost() {
    if (state.lostSince === null) state.lostSince = Date.now();
    setConnection("lost", "Cannot reach the simulator at " + window.location.host + " since " +
      clock(state.lostSince) + ": retrying every second; the values shown are the last ones read.");
  }

  // a token goes in a header: printable ASCII only (anything else could not be sent at all)
  function useToken(token) {
    if (!/^[\x20-\x7e]+$/.test(token)) {
      state.token = null;
      askToken("A token holds printable ASCII characters only: check it and give it again.");
      return false;
    }
    state.token = token;
    state.needToken = false;
    $("token-form").hidden = true;
    return true;
  }

  function askToken(message) {
    state.needToken = true;
    $("token-form").hidden = false;
    $("token-error").textContent = message || "";
    setConnection("token", "Waiting for the token.");
    $("token-input").focus();
  }

  // --- refreshing ---
  function schedule() {
    clearTimeout(state.timer);
    state.timer = setTimeout(refresh, REFRESH_MS);
  }

  function refreshNow() {
    if (state.running) {
      state.again = true;
      return;
    }
    refresh();
  }

  async function refresh() {
    clearTimeout(state.timer);
    if (state.needToken) return; // the token form restarts it
    state.running = true;
    try {
      const selected = state.selected;
      const listing = api("GET", "api/meters?offset=" + state.offset + "&limit=" + PAGE_SIZE + "&summary=1");
      const details = selected ? api("GET", meterPath(selected)).catch((error) => error) : null;
      const port = state.sites > 0 ? portOf(selected) : null;
      const site = port ? api("GET", "api/sites/" + port).catch((error) => error) : null;
      const page = await listing;
      connected();
      if (page.count > 0 && state.offset >= page.count) {
        state.offset = Math.floor((page.count - 1) / PAGE_SIZE) * PAGE_SIZE;
        state.again = true;
      }
      showSummary(page.summary);
      showRows(page);
      if (details) {
        const meter = await details;
        let home = site ? await site : null;
        if (home instanceof ApiError) {
          if (home.status === 0) throw home;
          home = null; // not a site (404): no site panel
        }
        if (selected === state.selected) {
          if (meter instanceof ApiError) {
            if (meter.status === 404) showGone(selected);
            else if (meter.status === 0) throw meter;
          } else {
            showDetails(meter, home);
            showSite(home);
          }
        }
      }
    } catch (error) {
      if (error.status === 401) askToken(state.token ? "The token was refused." : "");
      else if (error.status === 0) lost();
      else setConnection("error", "The control port answered: " + error.message);
    } finally {
      state.running = false;
    }
    if (state.again) {
      state.again = false;
      refresh();
    } else {
      schedule();
    }
  }

  // --- summary and table ---
  function showSummary(summary) {
    if (!summary) return;
    const figures = document.querySelectorAll("[data-summary]");
    for (const element of figures) {
      const name = element.dataset.summary;
      if (name === "power_total" || name === "flow") element.textContent = rounded(summary[name], short, 10);
      else if (name in summary) element.textContent = String(summary[name]);
    }
    const types = summary.types || {};
    document.querySelector('[data-summary-for="electric"]').hidden = !types.electric;
    document.querySelector('[data-summary-for="flow"]').hidden = !(types.water || types.gas);
    state.sites = summary.sites || 0;
    document.querySelector('[data-summary-for="sites"]').hidden = !state.sites;
    if (Boolean(summary.read_only) !== state.readOnly) {
      state.readOnly = Boolean(summary.read_only);
      $("read-only").hidden = !state.readOnly;
      enableActions();
    }
  }

  function units(type) {
    return type === "electric" || type === "inverter" ? ["kWh", "W"] : ["m³", "L/min"];
  }

  function cell(row, className) {
    const td = document.createElement("td");
    if (className) td.className = className;
    row.appendChild(td);
    return td;
  }

  // a reading: its value alone in a cell of its own (the data-reading hook), the unit beside it
  function valueCell(row, name) {
    const value = cell(row, "num");
    value.dataset.reading = name;
    return [value, cell(row, "unit")];
  }

  function newRow(id) {
    const tr = document.createElement("tr");
    tr.dataset.meter = id;
    tr.tabIndex = 0;
    const cells = {};
    cells.id = cell(tr);
    cells.id.textContent = id;
    cells.type = cell(tr);
    cells.state = cell(tr);
    [cells.total, cells.totalUnit] = valueCell(tr, "total");
    [cells.rate, cells.rateUnit] = valueCell(tr, "rate");
    cells.pins = cell(tr);
    cells.faults = cell(tr);
    tr.addEventListener("click", () => select(id));
    tr.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") {
        event.preventDefault();
        select(id);
      }
    });
    return { tr, cells };
  }

  function stateBadge(element, online, faults, noAlarm) {
    element.textContent = "";
    const badge = document.createElement("span");
    badge.className = "badge " + (online ? "online" : "offline");
    badge.textContent = online ? "online" : "offline";
    element.appendChild(badge);
    if (noAlarm === false) {
      const alarm = document.createElement("span");
      alarm.className = "badge fault";
      alarm.textContent = "alarm";
      element.append(" ", alarm);
    }
  }

  function showRows(page) {
    const body = $("meter-rows");
    const ids = page.meters.map((meter) => meter.id).join(",");
    if (ids !== state.rowIds) {
      state.rowIds = ids;
      state.rows.clear();
      const fragment_ = document.createDocumentFragment();
      for (const meter of page.meters) {
        const row = newRow(meter.id);
        state.rows.set(meter.id, row);
        fragment_.appendChild(row.tr);
      }
      body.replaceChildren(fragment_);
    }
    const now = Date.now();
    for (const meter of page.meters) {
      const { tr, cells } = state.rows.get(meter.id);
      const [totalUnit, rateUnit] = units(meter.type);
      cells.type.textContent = meter.type + (meter.unit_id === null ? "" : " · unit " + meter.unit_id);
      stateBadge(cells.state, meter.online, meter.faults, meter.no_alarm);
      cells.total.textContent = plain(meter.total);
      cells.totalUnit.textContent = totalUnit;
      cells.rate.textContent = plain(meter.rate);
      cells.rateUnit.textContent = rateUnit;
      cells.pins.textContent = meter.overrides.join(", ");
      cells.faults.textContent = meter.faults.join(", ");
      cells.faults.classList.toggle("error", meter.faults.length > 0);
      tr.classList.toggle("selected", meter.id === state.selected);
      tr.setAttribute("aria-selected", meter.id === state.selected ? "true" : "false");
      record(meter.id, now, meter.rate);
    }
    state.count = page.count;
    const last = page.offset + page.meters.length;
    const pages = Math.max(1, Math.ceil(page.count / PAGE_SIZE));
    const number = Math.floor(page.offset / PAGE_SIZE) + 1;
    $("page-info").textContent = page.count === 0 ? "no meters" :
      (page.offset + 1) + "–" + last + " of " + page.count + " (page " + number + " of " + pages + ")";
    const atStart = page.offset === 0;
    const atEnd = last >= page.count;
    document.querySelector('[data-page="first"]').disabled = atStart;
    document.querySelector('[data-page="prev"]').disabled = atStart;
    document.querySelector('[data-page="next"]').disabled = atEnd;
    document.querySelector('[data-page="last"]').disabled = atEnd;
    forget(now);
  }

  function goTo(which) {
    const lastOffset = Math.max(0, Math.floor((state.count - 1) / PAGE_SIZE) * PAGE_SIZE);
    const offsets = {
      first: 0,
      prev: Math.max(0, state.offset - PAGE_SIZE),
      next: Math.min(lastOffset, state.offset + PAGE_SIZE),
      last: lastOffset,
    };
    state.offset = offsets[which];
    refreshNow();
  }

  // --- history and chart ---
  function record(id, time, rate) {
    let samples = state.history.get(id);
    if (!samples) {
      samples = [];
      state.history.set(id, samples);
    }
    const previous = samples[samples.length - 1];
    if (previous && time - previous[0] < 200) {
      previous[1] = rate; // the listing and the details of one refresh: one sample
      return;
    }
    samples.push([time, rate]);
    while (samples.length && samples[0][0] < time - HISTORY_MS) samples.shift();
  }

  function forget(now) {
    for (const [id, samples] of state.history) {
      if (!samples.length || samples[samples.length - 1][0] < now - HISTORY_MS) state.history.delete(id);
    }
  }

  function drawChart() {
    const canvas = $("chart");
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth || 560;
    const height = canvas.clientHeight || 180;
    if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
      canvas.width = Math.round(width * ratio);
      canvas.height = Math.round(height * ratio);
    }
    const context = canvas.getContext("2d");
    context.setTransform(ratio, 0, 0, ratio, 0, 0);
    context.clearRect(0, 0, width, height);
    const now = Date.now();
    const start = now - HISTORY_MS;
    const samples = (state.history.get(state.selected) || []).filter((sample) => sample[0] >= start);
    canvas.dataset.points = String(samples.length);
    const left = 64;
    const right = 10;
    const top = 10;
    const bottom = 22;
    const plotWidth = width - left - right;
    const plotHeight = height - top - bottom;
    context.font = "11px system-ui, sans-serif";
    context.fillStyle = "#656d76";
    context.strokeStyle = "#d0d7de";
    context.lineWidth = 1;
    let low = 0;
    let high = 1;
    if (samples.length) {
      const values = samples.map((sample) => sample[1]);
      low = Math.min(0, ...values);
      high = Math.max(0, ...values);
      if (high === low) high = low + 1;
      high += (high - low) * 0.08;
    }
    const x = (time) => left + ((time - start) / HISTORY_MS) * plotWidth;
    const y = (value) => top + (1 - (value - low) / (high - low)) * plotHeight;
    context.textAlign = "right";
    context.textBaseline = "middle";
    for (let step = 0; step <= 4; step += 1) {
      const value = low + ((high - low) * step) / 4;
      const level = Math.round(y(value)) + 0.5;
      context.beginPath();
      context.moveTo(left, level);
      context.lineTo(left + plotWidth, level);
      context.stroke();
      context.fillText(short.format(value) + " " + state.rateUnit, left - 4, level);
    }
    context.textAlign = "center";
    context.textBaseline = "top";
    for (let minute = 5; minute >= 0; minute -= 1) {
      const label = minute === 0 ? "now" : "−" + minute + " min";
      context.fillText(label, x(now - minute * 60000), top + plotHeight + 6);
    }
    if (!samples.length) {
      context.fillText("waiting for readings…", left + plotWidth / 2, top + plotHeight / 2);
      return;
    }
    context.strokeStyle = "#1f6feb";
    context.lineWidth = 1.5;
    context.beginPath();
    samples.forEach((sample, index) => {
      if (index === 0) context.moveTo(x(sample[0]), y(sample[1]));
      else context.lineTo(x(sample[0]), y(sample[1]));
    });
    context.stroke();
    if (samples.length === 1) {
      context.fillStyle = "#1f6feb";
      context.fillRect(x(samples[0][0]) - 2, y(samples[0][1]) - 2, 4, 4);
    }
  }

  // --- the selected meter ---
  function select(id) {
    if (state.selected !== id) {
      state.selected = id;
      state.pinKind = null;
      if (portOf(id) !== ($("site-panel").dataset.site || null)) showSite(null); // the same site stays
      state.detailKeys = "";
      state.pinsShown = "";
      state.faultIds = null;
      $("reading-rows").replaceChildren();
      $("pins").replaceChildren();
      $("faults").replaceChildren();
      $("action-result").textContent = "";
    }
    const panel = $("meter-details");
    panel.dataset.meter = id;
    panel.hidden = false;
    $("no-selection").hidden = true;
    $("details-title").textContent = "Meter " + id;
    for (const [rowId, row] of state.rows) row.tr.classList.toggle("selected", rowId === id);
    enableActions();
    drawChart();
    refreshNow();
  }

  function deselect() {
    state.selected = null;
    showSite(null);
    const panel = $("meter-details");
    panel.hidden = true;
    delete panel.dataset.meter;
    $("no-selection").hidden = false;
    for (const row of state.rows.values()) row.tr.classList.remove("selected");
  }

  function showGone(id) {
    $("details-state").textContent = "not served";
    $("details-state").className = "badge offline";
    $("details-info").textContent = "The simulator serves no meter " + id + " (any more).";
  }

  function orderedKeys(meter) {
    const names = Object.keys(meter.readings);
    const headline = (HEADLINE[meter.type] || []).filter((name) => name in meter.readings);
    const rest = names.filter((name) => !headline.includes(name));
    return ["total", "rate", ...headline, ...rest];
  }

  function showDetails(meter, site) {
    const [totalUnit, rateUnit] = units(meter.type);
    state.rateUnit = rateUnit;
    const badge = $("details-state");
    badge.textContent = meter.online ? "online" : "offline";
    badge.className = "badge " + (meter.online ? "online" : "offline");
    $("details-info").textContent = (meter.type === "inverter" ? "hybrid inverter" : meter.type + " meter") +
      ", profile " + meter.profile + ", port " + meter.port +
      (meter.unit_id === null ? "" : ", unit id " + meter.unit_id) + ", tick " + meter.tick +
      (meter.no_alarm ? "" : ", alarm: a reading is out of its band");
    $("chart-caption").textContent = (rateUnit === "W" ? "Power" : "Flow") + " (" + rateUnit +
      ") over the last 5 minutes, as this page read it";
    const values = Object.assign({ total: meter.total, rate: meter.rate }, meter.readings);
    const unitOf = Object.assign({ total: totalUnit, rate: rateUnit }, meter.units || {});
    const keys = orderedKeys(meter);
    const signature = keys.join(",");
    if (signature !== state.detailKeys) {
      state.detailKeys = signature;
      state.detailCells.clear();
      const headline = new Set(["total", "rate", ...(HEADLINE[meter.type] || [])]);
      const rows = document.createDocumentFragment();
      for (const name of keys) {
        const tr = document.createElement("tr");
        if (headline.has(name)) tr.className = "headline";
        cell(tr).textContent = name;
        const [value, unit] = valueCell(tr, name);
        unit.textContent = unitOf[name] || "";
        state.detailCells.set(name, value);
        rows.appendChild(tr);
      }
      $("reading-rows").replaceChildren(rows);
    }
    for (const [name, value] of state.detailCells) value.textContent = plain(values[name]);
    const pinKind = site && site.grid_meter && site.grid_meter.id === meter.id ? "site-grid" : meter.type;
    if (pinKind !== state.pinKind) {
      state.pinKind = pinKind;
      const options = (PINNABLE[pinKind] || []).map((name) => new Option(name, name));
      $("pin-name").replaceChildren(...options);
      $("pin-form").hidden = options.length === 0;
      $("pin-note").hidden = !PIN_NOTES[pinKind];
      $("pin-note").textContent = PIN_NOTES[pinKind] || "";
    }
    showPins(meter, unitOf);
    showFaults(meter.faults);
    if (!state.rows.has(meter.id)) record(meter.id, Date.now(), meter.rate);
    drawChart();
  }

  // the port of a site's meter id (PORT-1, PORT-200); null for a meter of a single port
  function portOf(id) {
    const match = /^([0-9]+)-[0-9]+$/.exec(id || "");
    return match ? match[1] : null;
  }

  // the selected meter's site: its flows (data-flow cells, plain numbers to 0.1 W and 0.01 %)
  // with their directions, its two meters and its pins; null hides the panel
  function showSite(site) {
    const panel = $("site-panel");
    if (!site) {
      panel.hidden = true;
      delete panel.dataset.site;
      return;
    }
    panel.dataset.site = String(site.port);
    panel.hidden = false;
    $("site-title").textContent = "Site on port " + site.port;
    $("site-state").textContent = "inverter " + site.inverter_state;
    $("site-inverter").textContent = "inverter " + site.inverter.id;
    $("site-inverter").dataset.select = site.inverter.id;
    $("site-grid").textContent = "grid meter " + site.grid_meter.id;
    $("site-grid").dataset.select = site.grid_meter.id;
    for (const flow of SITE_FLOWS) {
      const text = rounded(site[flow + "_w"], short, 10);
      panel.querySelector('[data-flow="' + flow + '"]').textContent = text;
      const [above, below, zero] = DIRECTIONS[flow];
      const shown = Number(text);
      panel.querySelector('[data-direction="' + flow + '"]').textContent = shown > 0 ? above : shown < 0 ? below : zero;
    }
    if (site.battery === null) panel.querySelector('[data-direction="battery"]').textContent = "no battery";
    $("soc-row").hidden = site.soc_pct === null;
    panel.querySelector('[data-flow="soc"]').textContent = site.soc_pct === null ? "" : rounded(site.soc_pct, hundredths, 100);
    $("soc-bar").value = site.soc_pct === null ? 0 : site.soc_pct;
    const pins = Object.keys(site.pins).map((name) => name + " = " + plain(site.pins[name]) + " W");
    $("site-pins").textContent = "Site pins: " + (pins.length ? pins.join(", ") : "none, the household and the weather decide");
  }

  function listItem(text, action, data) {
    const li = document.createElement("li");
    const words = document.createElement("span");
    words.textContent = text;
    li.appendChild(words);
    if (action) {
      const button = document.createElement("button");
      button.type = "button";
      button.dataset.action = action;
      Object.assign(button.dataset, data);
      button.textContent = action === "release" ? "release" : "end";
      button.disabled = state.readOnly !== false;
      li.appendChild(button);
    }
    return li;
  }

  function showPins(meter, unitOf) {
    const signature = JSON.stringify(meter.overrides);
    if (signature === state.pinsShown) return;
    state.pinsShown = signature;
    const names = Object.keys(meter.overrides);
    const items = names.map((name) => listItem(name + " = " + plain(meter.overrides[name]) + " " +
      (unitOf[name] || ""), "release", { name }));
    if (!items.length) items.push(listItem("none: every reading follows the model"));
    $("pins").replaceChildren(...items);
  }

  function describe(fault) {
    const words = [fault.id, fault.type.replace("_", " ")];
    if (fault.type === "exception") words.push("0x" + fault.code.toString(16).padStart(2, "0"));
    if (fault.type === "corrupt") words.push(fault.mode);
    if (fault.delay_ms) words.push(fault.delay_ms + " ms");
    if (fault.functions) words.push("on FC " + fault.functions.join(", "));
    if (fault.probability !== undefined && fault.probability !== 1) words.push("p " + fault.probability);
    words.push("applied " + fault.applied);
    if (fault.remaining !== null && fault.remaining !== undefined) words.push(fault.remaining + " left");
    if (fault.expires_in_s !== null && fault.expires_in_s !== undefined) {
      words.push("ends in " + Math.ceil(fault.expires_in_s) + " s");
    }
    return words.join(" · ");
  }

  // one item a fault, kept while the fault lasts (its button stays the same element); only
  // the text changes as the fault is applied and its time runs down
  function showFaults(faults) {
    const ids = faults.map((fault) => fault.id).join(",");
    if (ids !== state.faultIds) {
      state.faultIds = ids;
      state.faultTexts.clear();
      const items = faults.map((fault) => {
        const item = listItem("", "end-fault", { fault: fault.id });
        state.faultTexts.set(fault.id, item.firstChild);
        return item;
      });
      if (!items.length) items.push(listItem("none"));
      $("faults").replaceChildren(...items);
    }
    for (const fault of faults) state.faultTexts.get(fault.id).textContent = describe(fault);
  }

  function enableActions() {
    const controls = $("meter-details").querySelectorAll("button[data-action], #pin-form input, #pin-form select, " +
      "#site-pin-form input, #site-pin-form select");
    for (const control of controls) control.disabled = state.readOnly !== false;
    $("actions").title = state.readOnly ? "The simulator is read-only (--read-only)" : "";
  }

  // --- the buttons ---
  // the buttons' requests go one at a time, in the order of the clicks: Offline then Online
  // leaves the meter online, and a double click makes two faults one after the other
  function act(action, data) {
    const id = state.selected;
    if (!id || state.readOnly !== false) return;
    state.actions = state.actions.then(() => run(action, id, data));
  }

  async function run(action, id, data) {
    const result = $("action-result");
    result.className = "";
    result.textContent = action + "…";
    try {
      result.textContent = await perform(action, id, data);
    } catch (error) {
      result.className = "error";
      result.textContent = action + ": " + error.message;
      if (error.status === 401) askToken("The token was refused.");
      if (error.status === 0) lost();
    }
    refreshNow();
  }

  async function perform(action, id, data) {
    const path = meterPath(id);
    if (action === "online" || action === "offline") {
      await api("PUT", path + "/online", { online: action === "online" });
      return "Meter " + id + " is " + action + ".";
    }
    if (action === "reset") {
      await api("POST", path + "/reset", {});
      return "Meter " + id + " was reset.";
    }
    if (action === "clear-faults") {
      const meter = await api("GET", path);
      let ended = 0;
      for (const fault of meter.faults) {
        try {
          await api("DELETE", "api/faults/" + encodeURIComponent(fault.id));
          ended += 1;
        } catch (error) {
          if (error.status !== 404) throw error; // ended meanwhile
        }
      }
      return ended ? "Ended " + ended + " fault" + (ended === 1 ? "" : "s") + "." : "No fault acts on meter " + id + ".";
    }
    if (action === "end-fault") {
      await api("DELETE", "api/faults/" + encodeURIComponent(data.fault));
      return "Fault " + data.fault + " ended.";
    }
    if (action === "pin") {
      const value = Number(data.value);
      await api("PUT", path + "/overrides", { [data.name]: value });
      return data.name + " pinned at " + plain(value) + ".";
    }
    if (action === "release") {
      await api("PUT", path + "/overrides", { [data.name]: null });
      return data.name + " released.";
    }
    if (action === "release-all") {
      await api("DELETE", path + "/overrides");
      return "Every pin released.";
    }
    if (action === "site-pin" || action === "site-release-all") {
      const port = portOf(id);
      const change = action === "site-pin" ? { [data.name]: Number(data.value) } : { load_w: null, pv_available_w: null };
      await api("PUT", "api/sites/" + port, change);
      return action === "site-pin" ? "Site " + port + ": " + data.name + " pinned at " + plain(Number(data.value)) + " W." :
        "Site " + port + ": its pins released.";
    }
    if (action in PRESETS) {
      const fault = await api("POST", "api/faults", Object.assign({}, PRESETS[action], { scope: { meter: id } }));
      return "Fault " + fault.id + " started: " + describe(fault) + ".";
    }
    throw new Error("unknown action");
  }

  // --- wiring ---
  function start() {
    $("meter-details").addEventListener("click", (event) => {
      const button = event.target.closest("button[data-action]");
      if (button && button.type !== "submit") act(button.dataset.action, Object.assign({}, button.dataset));
    });
    $("pin-form").addEventListener("submit", (event) => {
      event.preventDefault();
      act("pin", { name: $("pin-name").value, value: $("pin-value").value });
    });
    $("site-pin-form").addEventListener("submit", (event) => {
      event.preventDefault();
      act("site-pin", { name: $("site-pin-name").value, value: $("site-pin-value").value });
    });
    $("site-panel").addEventListener("click", (event) => {
      const button = event.target.closest("button[data-select]");
      if (button && button.dataset.select) select(button.dataset.select);
    });
    $("close-details").addEventListener("click", deselect);
    $("pager").addEventListener("click", (event) => {
      const button = event.target.closest("button[data-page]");
      if (button) goTo(button.dataset.page);
    });
    $("token-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const token = $("token-input").value.trim();
      $("token-input").value = "";
      if (useToken(token)) refreshNow();
    });
    window.addEventListener("resize", drawChart);
    window.addEventListener("hashchange", () => followFragment(true));
    followFragment(false);
  }

  // #token=...&meter=... : the token to send, the meter to show (a link to one meter's panel).
  // The token is taken out of the address once read, so that it stays in this page only.
  function followFragment(changed) {
    const fragment = new Map();
    const kept = [];
    for (const part of window.location.hash.slice(1).split("&")) {
      const at = part.indexOf("=");
      try {
        fragment.set(decodeURIComponent(at < 0 ? part : part.slice(0, at)),
          at < 0 ? "" : decodeURIComponent(part.slice(at + 1)));
      } catch (error) {
        continue; // a broken %-escape: that part is ignored
      }
      if (!part.startsWith("token=")) kept.push(part);
    }
    const token = fragment.get("token");
    if (fragment.has("token")) {
      const address = window.location.pathname + window.location.search;
      window.history.replaceState(null, "", kept.length ? address + "#" + kept.join("&") : address);
    }
    if (token && token !== state.token) useToken(token);
    const meter = fragment.get("meter");
    if (meter && meter !== state.selected) select(meter);
    else if (changed) refreshNow();
    else refresh();
  }

  start();
})();

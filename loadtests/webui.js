// The "relaybench live" tab's charts (loadtests/webui.py serves this file and adds it to
// Locust's page). Every second: fetch ./relaybench/live.json, redraw six small line charts on
// one time axis. No library and nothing fetched from elsewhere. While the tab is shown, the
// charts sit right under Locust's own tab bar, above the tab's table; otherwise they are hidden.
(() => {
  const TAB = "relaybench";
  const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf"];
  const PANELS = [
    { id: "ttft", title: "TTFT p50 / p95 (ms)", keys: ["ttft_p50", "ttft_p95"] },
    { id: "itl", title: "ITL p95 (ms)", keys: ["itl_p95"] },
    { id: "users", title: "active users", keys: ["users"] },
    { id: "rps", title: "requests done/s", keys: ["requests_per_s"] },
    { id: "errors", title: "errors/s", keys: ["errors_per_s"] },
    { id: "cpu", title: "server CPU % (100 = one core)", keys: null },
  ];
  const box = document.createElement("div");
  box.id = "relaybench-live";
  box.style.cssText = "display:none;padding:8px 0;font:13px sans-serif";
  box.dataset.updates = "0";
  const heading = document.createElement("div");
  heading.style.cssText = "margin-bottom:6px;opacity:.8";
  box.appendChild(heading);
  const canvases = {};
  for (const panel of PANELS) {
    const wrap = document.createElement("div");
    wrap.style.cssText = "margin:4px 0 10px";
    const title = document.createElement("div");
    title.className = "relaybench-title";
    title.id = `relaybench-title-${panel.id}`;
    title.textContent = panel.title;
    const canvas = document.createElement("canvas");
    canvas.id = `relaybench-${panel.id}`;
    canvas.width = 1000;
    canvas.height = 120;
    canvas.style.cssText = "width:100%;max-width:1000px;height:120px";
    wrap.append(title, canvas);
    box.appendChild(wrap);
    canvases[panel.id] = canvas;
  }

  const shown = () => new URLSearchParams(location.search).get("tab") === TAB;

  function place() {
    const tabs = document.querySelector("[role=tablist]");
    const container = tabs && tabs.closest(".MuiContainer-root");
    let bar = tabs;
    while (bar && bar.parentElement !== container) bar = bar.parentElement;
    if (bar && box.previousElementSibling !== bar) bar.after(box);
    else if (!bar && box.parentNode !== document.body) document.body.appendChild(box);
    box.style.display = shown() ? "block" : "none";
  }

  function draw(canvas, seconds, lines) {
    const ctx = canvas.getContext("2d");
    const w = canvas.width, h = canvas.height, left = 56, bottom = 18;
    const ink = getComputedStyle(document.body).color || "#333";
    ctx.clearRect(0, 0, w, h);
    ctx.font = "11px sans-serif";
    ctx.fillStyle = ink;
    ctx.strokeStyle = ink;
    const values = lines.flatMap((l) => l.values.filter((v) => v !== null));
    let drawn = 0;
    if (!seconds.length || !values.length) {
      ctx.fillText("no data yet", left + 10, h / 2);
      return drawn;
    }
    const top = Math.max(...values) * 1.1 || 1;
    const x0 = seconds[0], span = Math.max(seconds[seconds.length - 1] - x0, 1);
    const x = (s) => left + ((s - x0) / span) * (w - left - 8);
    const y = (v) => h - bottom - (v / top) * (h - bottom - 6);
    ctx.globalAlpha = 0.4;
    ctx.beginPath();
    ctx.moveTo(left, 4);
    ctx.lineTo(left, h - bottom);
    ctx.lineTo(w - 8, h - bottom);
    ctx.stroke();
    ctx.globalAlpha = 1;
    ctx.fillText(top.toPrecision(3), 2, 12);
    ctx.fillText("0", 2, h - bottom);
    ctx.fillText(`${x0} s`, left, h - 4);
    ctx.fillText(`${x0 + span} s since the target's start`, w - 200, h - 4);
    lines.forEach((line, i) => {
      ctx.strokeStyle = COLORS[i % COLORS.length];
      ctx.fillStyle = ctx.strokeStyle;
      ctx.lineWidth = 1.6;
      ctx.beginPath();
      let pen = false;
      line.values.forEach((v, j) => {
        if (v === null) return; // a second without a value: bridge it
        if (pen) ctx.lineTo(x(seconds[j]), y(v));
        else ctx.moveTo(x(seconds[j]), y(v));
        pen = true;
        drawn += 1;
      });
      ctx.stroke();
      ctx.fillText(line.label, left + 8 + i * 130, 12);
    });
    return drawn;
  }

  function last(values) {
    for (let i = values.length - 1; i >= 0; i--) if (values[i] !== null) return values[i];
    return null;
  }

  async function tick() {
    place();
    let data;
    try {
      const resp = await fetch("./relaybench/live.json", { cache: "no-store" });
      data = await resp.json();
    } catch (err) {
      heading.textContent = `live data unavailable (${err})`;
      return;
    }
    const seconds = data.seconds || [];
    heading.textContent = `${data.target}: ${seconds.length} complete seconds`;
    let points = 0;
    for (const panel of PANELS) {
      const lines = panel.keys
        ? panel.keys.map((k) => ({ label: k, values: (data.series || {})[k] || [] }))
        : Object.entries(data.cpu || {}).map(([name, values]) => ({ label: name, values }));
      points += draw(canvases[panel.id], seconds, lines);
      const title = document.getElementById(`relaybench-title-${panel.id}`);
      const now = lines.map((l) => `${l.label} ${last(l.values) ?? "–"}`).join(", ");
      title.textContent = `${panel.title}: ${now}`;
    }
    box.dataset.updates = String(Number(box.dataset.updates) + 1);
    box.dataset.seconds = String(seconds.length);
    box.dataset.points = String(points);
    box.dataset.last = JSON.stringify({
      second: seconds.length ? seconds[seconds.length - 1] : null,
      requests: (data.series || {}).requests_per_s || [],
    });
  }

  const start = () => {
    tick();
    setInterval(tick, 1000);
  };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();

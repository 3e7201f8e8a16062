// Small line charts as hand-written SVG for the Podium console (no library).
// PodiumChart.lines(lines, options) -> <svg>; a line is
// { values: [number|null], color, dashed }. The chart's <title> carries the
// summary in words, for screen readers and tooltips.
"use strict";
window.PodiumChart = (function () {
  const NS = "http://www.w3.org/2000/svg";
  const W = 300, H = 64, PAD_TOP = 12, PAD_BOTTOM = 2;

  function el(name, attrs) {
    const node = document.createElementNS(NS, name);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    return node;
  }

  function niceMax(max) {
    if (!(max > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(max)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= max) return m * p;
    return 10 * p;
  }

  function lines(series, options) {
    const opts = options || {};
    const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", preserveAspectRatio: "none" });
    const title = el("title");
    title.textContent = opts.title || "";
    svg.appendChild(title);
    const all = series.flatMap((s) => s.values.filter((v) => v !== null && Number.isFinite(v)));
    const top = niceMax(Math.max(0, ...all));
    svg.appendChild(el("rect", { x: 0, y: 0, width: W, height: H, fill: "#fff" }));
    svg.appendChild(el("line", { x1: 0, y1: H - PAD_BOTTOM, x2: W, y2: H - PAD_BOTTOM, stroke: "#d0d4da", "stroke-width": 1 }));
    svg.appendChild(el("line", { x1: 0, y1: PAD_TOP, x2: W, y2: PAD_TOP, stroke: "#eceef1", "stroke-width": 1 }));
    const label = el("text", { x: 2, y: 10, "font-size": 9, fill: "#555" });
    label.textContent = `${opts.format ? opts.format(top) : top}`;
    svg.appendChild(label);
    for (const s of series) {
      const n = s.values.length;
      if (n === 0) continue;
      const step = n > 1 ? W / (n - 1) : W;
      let d = "";
      let pen = false;
      const known = (v) => v !== null && v !== undefined && Number.isFinite(v);
      s.values.forEach((v, i) => {
        if (!known(v)) { pen = false; return; }
        const x = i * step;
        const y = (H - PAD_BOTTOM - (v / top) * (H - PAD_TOP - PAD_BOTTOM)).toFixed(1);
        d += `${pen ? "L" : "M"}${x.toFixed(1)},${y} `;
        // A point with no known neighbour: a short dash, so it shows.
        if (!known(s.values[i - 1]) && !known(s.values[i + 1])) {
          d += `M${Math.max(0, x - 3).toFixed(1)},${y} L${Math.min(W, x + 3).toFixed(1)},${y} `;
        }
        pen = true;
      });
      if (!d) continue;
      const path = el("path", {
        d: d.trim(), fill: "none", stroke: s.color, "stroke-width": 2,
        "vector-effect": "non-scaling-stroke", "stroke-linejoin": "round",
      });
      if (s.dashed) path.setAttribute("stroke-dasharray", "5 3");
      svg.appendChild(path);
    }
    return svg;
  }

  return { lines };
})();

"""The report's interactive frontier: every point of every run embedded as JSON, drawn by one
inline script as SVG, with hover for each point's numbers and provenance, a toggle per method
and an SLO slider that recomputes the best-at-SLO table in the page. Modelled points are lines,
measured ones markers. Nothing here is needed to read the report: the static figures stand
without scripts. `#slo=N&hide=A,B` in the address sets the slider and untick methods when the page opens.
"""

from __future__ import annotations

import json


def _model_points(run) -> list[dict]:
    pts = []
    for f, doc in run.sweeps:
        source = (doc.get("inputs") or {}).get("results_source", "simulated")
        for r in doc.get("frontier") or []:
            if r.get("tps_user") and r.get("throughput_tok_s_gpu"):
                pts.append(
                    {
                        "method": r["method"],
                        "kind": "modelled",
                        "concurrency": r.get("concurrency"),
                        "gamma": r.get("gamma"),
                        "tps_user": r["tps_user"],
                        "throughput": r["throughput_tok_s_gpu"],
                        "source": f"{source} (sweep)",
                        "file": str(f),
                    }
                )
    return pts


def _load_points(run) -> list[dict]:
    """Load runs' points, but not those of a search's own load runs (the search's points are them)."""
    pts = []
    searched = [f.parent for f, _ in run.searches]
    for f, doc, _ in run.loads:
        if any(d in f.parents for d in searched):
            continue
        cfg = doc.get("config") or {}
        source = (doc.get("server") or {}).get("source", "measured")
        for p in doc["points"]:
            if p.get("tps_user_mean") and p.get("output_tok_s"):
                pts.append(
                    {
                        "method": cfg.get("method") or f"live: {cfg.get('model', '?')}",
                        "kind": "measured",
                        "concurrency": p.get("concurrency"),
                        "tps_user": p["tps_user_mean"],
                        "throughput": p["output_tok_s"] / (cfg.get("gpus") or 1),
                        "ttft_s_p50": p.get("ttft_s_p50"),
                        "source": f"{source} (load)",
                        "file": str(f),
                    }
                )
    return pts


def _search_points(run) -> list[dict]:
    """A search's measured points, and its fitted frontier (TPOT = a + b C) as a modelled line."""
    from ..core.search import fit_rows

    pts = []
    for f, doc in run.searches:
        stat = doc["slo"].get("statistic", "mean")
        gpus = (doc.get("config") or {}).get("gpus") or 1
        for m in doc["methods"]:
            source = (m.get("server") or {}).get("source", "measured")
            for r in fit_rows(m, gpus):
                pts.append(
                    {
                        "method": m["label"],
                        "kind": "modelled",
                        "concurrency": r["concurrency"],
                        "tps_user": r["tps_user"],
                        "throughput": r["throughput_tok_s_gpu"],
                        "source": "fitted (search)",
                        "file": str(f),
                    }
                )
            for p in m.get("points") or []:
                if p.get("speed") and p.get("throughput"):
                    pts.append(
                        {
                            "method": m["label"],
                            "kind": "measured",
                            "concurrency": p["concurrency"],
                            "tps_user": p["speed"],
                            "tps_user_ci": p.get("speed_ci"),
                            "throughput": p["throughput"],
                            "statistic": stat,
                            "verdict": p.get("verdict"),
                            "saturated": p.get("saturated"),
                            "source": f"{source} (search)",
                            "file": str(f),
                        }
                    )
    return pts


def explorer(runs) -> str:
    """The interactive section's HTML (empty when no run has a frontier point)."""
    points = []
    slos = []
    for run in runs:
        for p in _model_points(run) + _load_points(run) + _search_points(run):
            points.append({"run": run.name, **p})
        slos += [doc.get("slo") for _, doc in run.sweeps] + [doc["slo"].get("tps_user") for _, doc in run.searches]
    if not points:
        return ""
    top = max(p["tps_user"] for p in points)
    slo = next((s for s in slos if s), round(top / 2))
    data = {"points": points, "slo": slo, "max_tps_user": top, "runs": [r.name for r in runs]}
    # < > & as JSON escapes: no input string can close the <script> element or open a tag
    blob = json.dumps(data, allow_nan=False).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return (
        "<h2>Explore the frontier</h2><div id=explore>"
        "<p class=cap>Lines: modelled (sweep); markers: measured (load, search). Hover a point for its numbers and "
        "where it came from; tick methods to show or hide them; the slider sets the per-user speed SLO and the "
        "table below it is recomputed from the points in this file. Needs scripts; the static figures below do "
        "not.</p>"
        "<div id=toggles></div>"
        f"<label>SLO <input id=slo type=range min=1 max={int(top) + 1} step=1 value={int(slo)}> "
        "<output id=slo-value></output> tok/s per user</label>"
        "<svg id=frontier width=820 height=420 role=img aria-label='throughput against per-user speed'></svg>"
        "<table id=best-at-slo></table></div>"
        f"<script type=application/json id=frontier-data>{blob}</script>"
        f"<script>{SCRIPT}</script>"
    )


SCRIPT = r"""
(function () {
  const data = JSON.parse(document.getElementById('frontier-data').textContent);
  const pts = data.points, multi = data.runs.length > 1;
  const svg = document.getElementById('frontier'), NS = 'http://www.w3.org/2000/svg';
  const slider = document.getElementById('slo'), shown = {};
  const key = p => (multi ? p.run + ': ' : '') + p.method;
  const colors = {'no-spec': '#7f7f7f', 'mtp-1': '#1f77b4', 'dflash': '#2ca02c', 'eagle3': '#ff7f0e',
                  'dspark': '#d62728'};
  const palette = ['#9467bd', '#8c564b', '#e377c2', '#17becf', '#bcbd22'];
  const methods = [...new Set(pts.map(key))];
  const color = m => colors[m.split(': ').pop()] || palette[methods.indexOf(m) % palette.length];
  const fmt = (x, d) => x == null ? '—' : Number(x).toLocaleString('en', {maximumFractionDigits: d});
  const toggles = document.getElementById('toggles');
  methods.forEach(m => {
    shown[m] = true;
    const l = document.createElement('label'), box = document.createElement('input');
    box.type = 'checkbox'; box.checked = true; box.dataset.method = m;
    box.addEventListener('change', () => { shown[m] = box.checked; draw(); });
    l.style.color = color(m); l.append(box, ' ' + m + ' '); toggles.append(l);
  });
  function el(name, attrs, parent) {
    const e = document.createElementNS(NS, name);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    (parent || svg).append(e); return e;
  }
  const W = 820, H = 420, L = 70, R = 20, T = 15, B = 45;
  const xmax = data.max_tps_user * 1.05, ymax = Math.max(...pts.map(p => p.throughput)) * 1.08;
  const sx = x => L + x / xmax * (W - L - R), sy = y => H - B - y / ymax * (H - T - B);
  function tip(p) {
    return [key(p) + ' — ' + p.kind + ', ' + p.source,
            'concurrency ' + fmt(p.concurrency, 0) + (p.gamma != null ? ', gamma ' + p.gamma : ''),
            'per-user ' + fmt(p.tps_user, 1) + ' tok/s' + (p.statistic ? ' (' + p.statistic + ')' : '') +
              (p.tps_user_ci && p.tps_user_ci[0] != null ? ' [' + fmt(p.tps_user_ci[0], 1) + ', ' +
               fmt(p.tps_user_ci[1], 1) + ']' : ''),
            'throughput ' + fmt(p.throughput, 0) + ' tok/s per GPU',
            p.verdict ? 'SLO: ' + p.verdict + (p.saturated ? ' (saturated: ' + p.saturated + ')' : '') : '',
            p.file].filter(Boolean).join('\n');
  }
  function draw() {
    svg.replaceChildren();
    el('line', {x1: L, y1: H - B, x2: W - R, y2: H - B, stroke: '#333'});
    el('line', {x1: L, y1: T, x2: L, y2: H - B, stroke: '#333'});
    for (let i = 0; i <= 5; i++) {
      const xv = xmax * i / 5, yv = ymax * i / 5;
      el('text', {x: sx(xv), y: H - B + 16, 'text-anchor': 'middle', 'font-size': 11}).textContent = fmt(xv, 0);
      el('text', {x: L - 6, y: sy(yv) + 4, 'text-anchor': 'end', 'font-size': 11}).textContent = fmt(yv, 0);
    }
    el('text', {x: (L + W - R) / 2, y: H - 6, 'text-anchor': 'middle', 'font-size': 12}).textContent =
      'per-user speed (tok/s per user)';
    el('text', {x: 14, y: (T + H - B) / 2, 'text-anchor': 'middle', 'font-size': 12,
                transform: 'rotate(-90 14 ' + (T + H - B) / 2 + ')'}).textContent = 'throughput (tok/s per GPU)';
    const slo = Number(slider.value);
    el('line', {x1: sx(slo), y1: T, x2: sx(slo), y2: H - B, stroke: '#555', 'stroke-dasharray': '4 3'});
    for (const m of methods) {
      if (!shown[m]) continue;
      for (const kind of ['modelled', 'measured']) {
        const group = pts.filter(p => key(p) === m && p.kind === kind)
                         .sort((a, b) => (a.concurrency || 0) - (b.concurrency || 0));
        if (!group.length) continue;
        if (kind === 'modelled') {
          el('polyline', {points: group.map(p => sx(p.tps_user) + ',' + sy(p.throughput)).join(' '),
                          fill: 'none', stroke: color(m), 'stroke-width': 2});
        }
        for (const p of group) {
          const c = el('circle', {cx: sx(p.tps_user), cy: sy(p.throughput), r: kind === 'modelled' ? 2.5 : 5,
                                  fill: kind === 'modelled' ? color(m) : 'white', stroke: color(m),
                                  'stroke-width': 2, class: 'pt ' + kind});
          el('title', {}, c).textContent = tip(p);
        }
      }
    }
  }
  function table() {
    const slo = Number(slider.value);
    document.getElementById('slo-value').textContent = slo;
    const rows = [];
    for (const m of methods) {
      if (!shown[m]) continue;
      for (const kind of ['modelled', 'measured']) {
        const group = pts.filter(p => key(p) === m && p.kind === kind);
        if (!group.length) continue;
        const ok = group.filter(p => p.tps_user >= slo);
        const best = ok.reduce((a, p) => (a && a.throughput >= p.throughput ? a : p), null);
        rows.push({m, kind, best, n: group.length});
      }
    }
    const base = {};
    rows.forEach(r => { if (r.best && r.m.split(': ').pop() === 'mtp-1') base[r.kind] = r.best.throughput; });
    const t = document.getElementById('best-at-slo');
    t.innerHTML = '<tr><th>method</th><th>kind</th><th>tok/s per GPU</th><th>concurrency</th>' +
      '<th>tok/s per user</th><th>vs mtp-1</th><th>source</th><th>points</th></tr>';
    for (const r of rows) {
      const tr = document.createElement('tr'), b = r.best;
      tr.dataset.method = r.m; tr.dataset.kind = r.kind;
      const cells = [r.m, r.kind, b ? fmt(b.throughput, 0) : 'infeasible', b ? fmt(b.concurrency, 0) : '—',
                     b ? fmt(b.tps_user, 1) : '—',
                     b && base[r.kind] ? (b.throughput / base[r.kind]).toFixed(2) + 'x' : '—',
                     b ? b.source : '—', r.n];
      cells.forEach((v, i) => { const td = document.createElement('td'); td.textContent = v;
                                if (i >= 2 && i !== 6) td.className = 'n'; tr.append(td); });
      t.append(tr);
    }
  }
  slider.addEventListener('input', () => { draw(); table(); });
  toggles.addEventListener('change', table);
  // #slo=N&hide=A,B drives the controls as a reader would (how the page is tested headless)
  const asked = new URLSearchParams(location.hash.slice(1));
  draw(); table();
  for (const m of (asked.get('hide') || '').split(',').filter(Boolean)) {
    const box = [...toggles.querySelectorAll('input')].find(b => b.dataset.method === m);
    if (box) { box.checked = false; box.dispatchEvent(new Event('change', {bubbles: true})); }
  }
  if (asked.get('slo')) { slider.value = asked.get('slo'); slider.dispatchEvent(new Event('input')); }
})();
"""

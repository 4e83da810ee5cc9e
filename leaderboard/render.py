"""``flexrec-bench leaderboard render --out site/``: one static page, no external resources.
One sortable table per dataset x need (95% CIs; provenance on hover and in a detail row), bar charts
of the main metrics per method, and any paper-reported numbers in a separate, labelled table."""

from __future__ import annotations

import html
import json
from pathlib import Path

from flexrec_bench.io import write_text_atomic

from .schema import Entry, Leaderboard

METRICS = ("ndcg@5", "ndcg@10", "ndcg@30", "recall@5", "precision@5", "mrr@5")
CHART_METRICS = ("ndcg@5", "ndcg@10", "recall@5")
COLORS = ("#4C72B0", "#DD8452", "#55A868", "#C44E52")

CSS = """
body{font-family:system-ui,sans-serif;margin:2rem;max-width:1200px;color:#222}
h1{margin-bottom:.2rem} .sub{color:#666;margin-top:0}
table{border-collapse:collapse;margin:1rem 0;width:100%;font-size:14px}
th,td{border-bottom:1px solid #ddd;padding:4px 8px;text-align:right}
th:first-child,td:first-child{text-align:left} th{cursor:pointer;background:#f5f5f5;user-select:none}
th.sorted-desc::after{content:" \\25BC"} th.sorted-asc::after{content:" \\25B2"}
.ci{color:#888;font-size:11px} tr.detail td{text-align:left;background:#fafafa;font-size:12px;color:#444}
tr.detail{display:none} tr.detail.open{display:table-row} button.more{font-size:11px}
.reported{border:2px dashed #c44;padding:.5rem 1rem;margin-top:2rem} .reported h2{color:#c44}
svg text{font-size:11px;font-family:system-ui,sans-serif}
"""

JS = """
window.__errors = [];
window.addEventListener('error', e => { window.__errors.push(String(e.message)); document.body.dataset.errors = window.__errors.length; });
function sortTable(th) {
  const table = th.closest('table'), idx = [...th.parentNode.children].indexOf(th);
  const asc = th.classList.contains('sorted-desc');
  table.querySelectorAll('th').forEach(h => h.classList.remove('sorted-asc', 'sorted-desc'));
  th.classList.add(asc ? 'sorted-asc' : 'sorted-desc');
  const body = table.tBodies[0];
  const pairs = [...body.querySelectorAll('tr.entry')].map(r => [r, r.nextElementSibling]);
  const key = r => { const v = r.children[idx].dataset.value; return v === undefined ? r.children[idx].textContent : parseFloat(v); };
  pairs.sort((a, b) => { const x = key(a[0]), y = key(b[0]); const c = x < y ? -1 : x > y ? 1 : 0; return asc ? c : -c; });
  pairs.forEach(([r, d]) => { body.appendChild(r); body.appendChild(d); });
}
document.addEventListener('DOMContentLoaded', () => {
  document.querySelectorAll('th[data-sort]').forEach(th => th.addEventListener('click', () => sortTable(th)));
  document.querySelectorAll('button.more').forEach(b => b.addEventListener('click', () => {
    b.closest('tr').nextElementSibling.classList.toggle('open'); }));
  document.body.dataset.rows = document.querySelectorAll('tr.entry').length;
  document.body.dataset.ready = '1';
});
"""


def _esc(x) -> str:
    return html.escape(str(x), quote=True)


def _provenance(e: Entry) -> str:
    r = e.results
    p = r.provenance
    return (f"model {r.model.id} (revision {r.model.revision or '-'}); build {r.dataset.fingerprint}; "
            f"{r.dataset.instances} instances; flexrec-bench {p.flexrec_bench_version}, commit "
            f"{(p.git_commit or '-')[:10]}{' (dirty)' if p.git_dirty else ''}; {p.date}; {p.wall_seconds:.1f}s; "
            f"bootstrap {r.bootstrap.samples} x seed {r.bootstrap.seed}; rankings sha256 "
            f"{e.verification.rankings_sha256[:12]}…; verified {e.verification.submitted_at}")


def _table(entries: list[Entry], tid: str) -> str:
    head = "".join(f'<th data-sort="num">{m}</th>' for m in METRICS)
    rows = []
    def sort_key(e: Entry) -> float:
        v = e.results.metrics.get("ndcg@10") or next(iter(e.results.metrics.values()), None)
        return -(v.mean if v is not None and v.mean is not None else -1.0)

    for e in sorted(entries, key=sort_key):
        cells = []
        for m in METRICS:
            v = e.results.metrics.get(m)
            cells.append(f'<td data-value="{v.mean:.6f}">{v.mean:.4f}<br><span class="ci">[{v.ci95[0]:.3f}, '
                         f'{v.ci95[1]:.3f}]</span></td>' if v is not None and v.mean is not None
                         else '<td data-value="-1">–</td>')
        prov = _provenance(e)
        parse = e.results.parse
        extra = (f"; parse: {parse.unparseable} unparseable, {parse.invalid_ids} invalid ids, {parse.duplicates} "
                 f"duplicates, {parse.missing_items} padded") if parse else ""
        rows.append(f'<tr class="entry" title="{_esc(prov)}"><td>{_esc(e.results.model.name)} '
                    f'<button class="more" type="button">details</button></td>{"".join(cells)}</tr>'
                    f'<tr class="detail"><td colspan="{len(METRICS) + 1}">{_esc(prov + extra)}<br>config: '
                    f'{_esc(json.dumps(e.results.model.config, sort_keys=True))}</td></tr>')
    return (f'<table id="{tid}"><thead><tr><th data-sort="text">model</th>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>')


def _chart(entries: list[Entry]) -> str:
    entries = sorted(entries, key=lambda e: e.results.model.name)
    n, m = len(entries), len(CHART_METRICS)
    bw, gap, h, left = 14, 18, 180, 40
    width = left + n * (m * bw + gap) + 160
    parts = [f'<svg width="{width}" height="{h + 70}" role="img" aria-label="bar chart">',
             f'<line x1="{left}" y1="{h + 10}" x2="{width - 160}" y2="{h + 10}" stroke="#999"/>']
    for t in (0, 0.25, 0.5, 0.75, 1.0):
        y = h + 10 - t * h
        parts.append(f'<text x="{left - 6}" y="{y + 4}" text-anchor="end">{t:.2f}</text>'
                     f'<line x1="{left}" y1="{y}" x2="{width - 160}" y2="{y}" stroke="#eee"/>')
    for i, e in enumerate(entries):
        x0 = left + gap / 2 + i * (m * bw + gap)
        for j, metric in enumerate(CHART_METRICS):
            v = e.results.metrics.get(metric)
            if v is None or v.mean is None:
                continue
            bh = max(0.0, v.mean) * h
            parts.append(f'<rect x="{x0 + j * bw}" y="{h + 10 - bh}" width="{bw - 2}" height="{bh}" fill="{COLORS[j]}">'
                         f'<title>{_esc(e.results.model.name)} {metric} {v.mean:.4f} [{v.ci95[0]:.3f}, {v.ci95[1]:.3f}]'
                         f'</title></rect>')
            lo, hi = (h + 10 - v.ci95[0] * h), (h + 10 - v.ci95[1] * h)
            cx = x0 + j * bw + (bw - 2) / 2
            parts.append(f'<line x1="{cx}" y1="{lo}" x2="{cx}" y2="{hi}" stroke="#333"/>')
        parts.append(f'<text x="{x0 + m * bw / 2}" y="{h + 24}" text-anchor="end" transform="rotate(-30 '
                     f'{x0 + m * bw / 2} {h + 24})">{_esc(e.results.model.name[:28])}</text>')
    for j, metric in enumerate(CHART_METRICS):
        parts.append(f'<rect x="{width - 140}" y="{14 + 18 * j}" width="12" height="12" fill="{COLORS[j]}"/>'
                     f'<text x="{width - 122}" y="{24 + 18 * j}">{metric}</text>')
    parts.append("</svg>")
    return "".join(parts)


def render(board: Leaderboard, out_dir: str | Path) -> Path:
    groups: dict[tuple[str, str, str], list[Entry]] = {}
    for e in board.entries:
        groups.setdefault((e.results.dataset.name, e.results.dataset.need, e.results.dataset.split), []).append(e)
    sections = []
    for n, ((ds, need, split), es) in enumerate(sorted(groups.items())):
        sections.append(f'<section><h2>{_esc(ds)} · {_esc(need)} · {_esc(split)}</h2>'
                        f'<p class="sub">build {_esc(es[0].results.dataset.fingerprint)} · {len(es)} verified '
                        f'entries · click a header to sort, "details" for provenance</p>'
                        f'{_table(es, f"t{n}")}{_chart(es)}</section>')
    reported = ""
    if board.reported_in_paper:
        rows = "".join(f"<tr><td>{_esc(r.method)}</td><td>{_esc(r.dataset)}</td><td>{_esc(r.need)}</td>"
                       f"<td>{_esc(r.metric)}</td><td>{r.value:.4f}</td><td>{_esc(r.source)}</td></tr>"
                       for r in board.reported_in_paper)
        reported = ('<div class="reported"><h2>Reported in the paper (not verified, not comparable)</h2>'
                    '<p>Numbers as printed by their authors, on their own data builds. They were not re-scored here.</p>'
                    '<table><thead><tr><th>method</th><th>dataset</th><th>need</th><th>metric</th><th>value</th>'
                    f'<th>source</th></tr></thead><tbody>{rows}</tbody></table></div>')
    page = (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>flexrec-bench leaderboard</title>'
            f'<style>{CSS}</style></head><body data-entries="{len(board.entries)}">'
            f'<h1>flexrec-bench leaderboard</h1><p class="sub">Every entry below was re-scored from its rankings '
            f'file against the registered data build by <code>flexrec-bench submit</code>. Metrics: mean with 95% '
            f'bootstrap CI.</p>{"".join(sections) or "<p>No entries yet.</p>"}{reported}'
            f'<script>{JS}</script></body></html>')
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "index.html", page)
    return out / "index.html"

window.__errors = [];
window.addEventListener('error', e => { window.__errors.push(String(e.message)); document.body.dataset.errors = window.__errors.length; });
function sortTable(th) {
  const table = th.closest('table'), idx = [...th.parentNode.children].indexOf(th);
  const asc = th.classList.contains('sorted-desc');
  table.querySelectorAll('th').forEach(h => h.classList.remove('sorted-asc', 'sorted-desc'));
  th.classList.add(asc ? 'sorted-asc' : 'sorted-desc');
  const body = table.tBodies[0];
  const pairs = [...body.querySelectorAll('tr.entry')].map(r => [r, r.nextElementSibling]);
  const num = th.dataset.sort === 'num';
  const key = r => { const c = r.children[idx]; return num ? parseFloat(c.dataset.value) : (c.dataset.value || c.textContent).trim(); };
  pairs.sort((a, b) => { const x = key(a[0]), y = key(b[0]); const c = x < y ? -1 : x > y ? 1 : 0; return asc ? c : -c; });
  pairs.forEach(([r, d]) => { body.appendChild(r); body.appendChild(d); });
  body.querySelectorAll('tr.reference-row').forEach(r => body.appendChild(r));  // references stay last
}
function showTab(id) {
  document.querySelectorAll('.panel').forEach(p => p.classList.toggle('active', p.id === id));
  document.querySelectorAll('button.tab').forEach(b => b.setAttribute('aria-selected', b.dataset.tab === id));
  document.body.dataset.tab = id;
}
document.addEventListener('DOMContentLoaded', () => {
  document.querySelectorAll('th[data-sort]').forEach(th => th.addEventListener('click', () => sortTable(th)));
  document.querySelectorAll('button.more').forEach(b => b.addEventListener('click', () => {
    b.closest('tr').nextElementSibling.classList.toggle('open'); }));
  document.querySelectorAll('button.tab').forEach(b => b.addEventListener('click', () => {
    showTab(b.dataset.tab); history.replaceState(null, '', '#' + b.dataset.tab); }));
  const first = document.querySelector('button.tab[data-entries]:not([data-entries="0"])') || document.querySelector('button.tab');
  const wanted = location.hash.slice(1);
  if (first) showTab(document.getElementById(wanted) ? wanted : first.dataset.tab);
  document.body.dataset.rows = document.querySelectorAll('tr.entry').length;
  document.body.dataset.ready = '1';
});

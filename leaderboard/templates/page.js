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

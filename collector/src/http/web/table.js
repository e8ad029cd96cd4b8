// Data tables: sortable by any column (a button in each header: click, Enter or Space; `aria-sort` on
// the sorted column and an arrow beside its name), a totals row for the columns that add up, and paging
// (full height, `rows 1–25 of N` with previous/next) instead of a scroll box. On a narrow panel (a phone)
// the secondary columns hide and then every row becomes a card, so the dollar columns stay on screen.
//
// A table is made once per panel and fed new rows on every refresh (`set`): its sort order, page and
// keyboard focus survive the refresh, and the sort order survives navigation (per table name).

import { h } from './views.js';

export const PAGE_SIZE = 25;
const remembered = new Map(); // table name → { key, dir }

/**
 * `columns`: [{ key, title, cell(row), value(row) (what sorts: a number or a string; default: none, the
 * column does not sort), num (right-aligned), money (a dollar column: never hidden, first in a card),
 * secondary (hidden on a narrow panel), total(rows) (the totals row's cell; absent: blank) }].
 * `sort`: the column key first sorted by, `dir` 'asc' | 'desc'. `pageSize`: rows a page.
 * `label(rows)`: the totals row's first cell. `onPageSize(n)`: called when the reader picks a page size.
 */
export function dataTable({ name, columns, sort, dir = 'desc', pageSize = PAGE_SIZE, totals = true, label, onPageSize }) {
  const state = remembered.get(name) || { key: sort, dir };
  if (!columns.some((c) => c.key === state.key && c.value)) Object.assign(state, { key: sort, dir });
  remembered.set(name, state);
  let rows = [];
  let page = 0;

  const heads = columns.map((c) => {
    const arrow = h('span.arrow', { 'aria-hidden': 'true' });
    const th = h(`th${c.num ? '.num' : ''}${c.money ? '.money' : ''}${c.secondary ? '.opt' : ''}`, { scope: 'col', 'data-col': c.key },
      c.value ? h('button.sort', { type: 'button', onclick: () => sortBy(c) }, h('span', c.title), arrow) : c.title);
    return { c, th, arrow };
  });
  const tbody = h('tbody');
  const tfoot = h('tfoot');
  const tableEl = h('table.data', { 'data-table': name }, h('thead', h('tr', heads.map((x) => x.th))), tbody, totals ? tfoot : null);
  const range = h('span.range', { 'aria-live': 'polite' });
  const prev = h('button.page-prev', { type: 'button', 'aria-label': 'Previous page', onclick: () => go(page - 1) }, '‹ prev');
  const next = h('button.page-next', { type: 'button', 'aria-label': 'Next page', onclick: () => go(page + 1) }, 'next ›');
  const sizes = [...new Set([10, 25, 50, 100, pageSize])].sort((a, b) => a - b);
  const size = h('select.page-size', {
    'aria-label': 'Rows a page',
    onchange: (e) => { pageSize = Number(e.target.value); page = 0; if (onPageSize) onPageSize(pageSize); else render(); },
  }, sizes.map((n) => h('option', { value: String(n) }, `${n} a page`)));
  size.value = String(pageSize);
  const pager = h('div.pager', range, h('span.pages', prev, next), size);
  const el = h(`div.table-wrap${columns.length >= 6 ? '.wide' : ''}`, tableEl, pager);

  function sortBy(c) {
    if (state.key === c.key) state.dir = state.dir === 'asc' ? 'desc' : 'asc';
    else Object.assign(state, { key: c.key, dir: typeof rows.map(c.value).find((v) => v !== null && v !== undefined) === 'number' ? 'desc' : 'asc' });
    page = 0;
    render();
  }
  function go(p) {
    const had = document.activeElement;
    page = p;
    render();
    // a button that just became disabled drops the keyboard focus: hand it to the other one
    if ((had === prev || had === next) && had.disabled) (had === prev ? next : prev).focus();
  }

  function sorted() {
    const col = columns.find((c) => c.key === state.key);
    if (!col || !col.value) return rows;
    const sign = state.dir === 'asc' ? 1 : -1;
    const val = rows.map((r, i) => ({ r, i, v: col.value(r) }));
    val.sort((a, b) => {
      const x = a.v; const y = b.v;
      const xn = x === null || x === undefined || Number.isNaN(x);
      const yn = y === null || y === undefined || Number.isNaN(y);
      if (xn || yn) return xn === yn ? a.i - b.i : xn ? 1 : -1; // no value: last either way
      const d = typeof x === 'number' && typeof y === 'number' ? x - y : String(x).localeCompare(String(y), 'en', { numeric: true });
      return d === 0 ? a.i - b.i : sign * d;
    });
    return val.map((x) => x.r);
  }

  function render() {
    for (const { c, th, arrow } of heads) {
      if (!c.value) continue;
      const on = c.key === state.key;
      if (on) th.setAttribute('aria-sort', state.dir === 'asc' ? 'ascending' : 'descending');
      else th.removeAttribute('aria-sort');
      arrow.textContent = on ? (state.dir === 'asc' ? '▲' : '▼') : '↕';
      th.classList.toggle('sorted', on);
      th.querySelector('button').title = `Sort by ${c.title}${on ? ` (now ${state.dir === 'asc' ? 'ascending' : 'descending'})` : ''}`;
    }
    const all = sorted();
    const pages = Math.max(1, Math.ceil(all.length / pageSize));
    page = Math.max(0, Math.min(page, pages - 1));
    const first = page * pageSize;
    const shown = all.slice(first, first + pageSize);
    tbody.replaceChildren(...shown.map((r) => h('tr', columns.map((c) => cell('td', c, c.cell(r))))));
    if (totals) {
      tfoot.replaceChildren(h('tr.totals', columns.map((c, i) => {
        if (i === 0) return cell('th', c, label ? label(rows) : `Total · ${rows.length} ${rows.length === 1 ? 'row' : 'rows'}`, { scope: 'row' });
        return cell('td', c, c.total ? c.total(rows) : '');
      })));
    }
    range.textContent = all.length ? `rows ${first + 1}–${first + shown.length} of ${all.length}` : 'no rows';
    prev.disabled = page === 0;
    next.disabled = page >= pages - 1;
    pager.hidden = all.length <= Math.min(...sizes) && pages === 1;
    el.dataset.page = String(page + 1);
    el.dataset.pages = String(pages);
  }

  function cell(tag, c, content, attrs = {}) {
    const cls = `${c.num ? '.num' : ''}${c.money ? '.money' : ''}${c.secondary ? '.opt' : ''}`;
    return h(`${tag}${cls}`, { 'data-col': c.key, 'data-label': c.title, ...attrs }, content);
  }

  return {
    el,
    /** New rows (a refresh): the sort order, page and focus stay. */
    set(newRows) { rows = newRows; render(); return el; },
  };
}

/** Puts `el` into `body` unless it is there already (moving it would drop the keyboard focus inside). */
export function show(body, el) {
  if (body.childElementCount !== 1 || body.firstElementChild !== el) body.replaceChildren(el);
}

// Small DOM helpers. Every value from the server is put in the page as text (textContent),
// never as HTML: user ids, labels and reasons come from clients.

/** `el('td', {class: 'num'}, 'text', child)`: an element with attributes and children. */
export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'title') e.title = v;
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children) {
    if (c === undefined || c === null) continue;
    e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

export const $ = (id) => document.getElementById(id);

/** Replace the rows of a table's tbody; `empty` (text) when there are none. */
export function fillRows(tbody, rows, columns, empty = 'none') {
  tbody.replaceChildren();
  if (rows.length === 0) {
    tbody.append(el('tr', {}, el('td', { colspan: columns, class: 'empty' }, empty)));
    return;
  }
  tbody.append(...rows);
}

const nf = new Intl.NumberFormat('en', { maximumFractionDigits: 1 });

/** 1234567 -> "1.2M"; small numbers as they are (one decimal at most). */
export function num(n) {
  if (typeof n !== 'number' || !Number.isFinite(n)) return '–';
  const a = Math.abs(n);
  if (a >= 1e9) return `${nf.format(n / 1e9)}G`;
  if (a >= 1e6) return `${nf.format(n / 1e6)}M`;
  if (a >= 1e4) return `${nf.format(n / 1e3)}k`;
  return nf.format(n);
}

/** Seconds -> "3d 4h", "2h 5m", "4m 10s", "12s". */
export function duration(s) {
  s = Math.floor(s);
  if (s >= 86400) return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
  if (s >= 3600) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  if (s >= 60) return `${Math.floor(s / 60)}m ${s % 60}s`;
  return `${s}s`;
}

/** An ISO time as the local clock time (HH:MM:SS). */
export function clock(iso) {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : d.toLocaleTimeString('en-GB', { hour12: false });
}

/** "a, b ,c" -> ["a","b","c"] */
export function list(text) {
  return text
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}

/** Show a result line: `ok` true (success), false (error). */
export function say(output, text, ok = true) {
  output.textContent = text;
  output.className = ok ? 'result ok' : 'result error';
}

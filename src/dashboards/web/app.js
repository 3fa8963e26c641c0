/* global document, window, location, fetch, FormData, URLSearchParams, Node */
// Cairn dashboards: a small hash-routed page over the report API (/api/...). No build step;
// Chart.js is loaded as a UMD script. Every number shown comes from an API response.

const main = document.getElementById('main');
const statusLine = document.getElementById('status');
const userBox = document.getElementById('user');
let me = null;
const charts = [];

/** h builds an element: h('a', { href: '#' }, 'text', child). */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else if (key === 'class') el.className = value;
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children.flat()) if (child !== null && child !== undefined && child !== false) el.append(child instanceof Node ? child : String(child));
  return el;
}

const fmt = new Intl.NumberFormat('en-US');
const pct = (x) => (x === null || x === undefined ? '–' : `${(x * 100).toFixed(1)}%`);
const status = (text) => { statusLine.textContent = text; };

class HttpError extends Error {
  constructor(status, problem) { super(problem?.detail || problem?.title || `HTTP ${status}`); this.status = status; }
}

async function api(path) {
  const response = await fetch(path, { credentials: 'same-origin', headers: { Accept: 'application/json' } });
  if (!response.ok) throw new HttpError(response.status, await response.json().catch(() => null));
  return response.json();
}

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  return q.toString();
}

function destroyCharts() { while (charts.length) charts.pop().destroy(); }

function chart(canvas, config) {
  if (!window.Chart) return null;
  const c = new window.Chart(canvas, { ...config, options: { responsive: true, maintainAspectRatio: false, animation: false, ...config.options } });
  charts.push(c);
  return c;
}

// ------------------------------------------------------------------ sign-in

function signInForm(message) {
  const input = h('input', { type: 'password', name: 'token', id: 'token', autocomplete: 'current-password', required: true });
  const error = h('p', { class: 'error', role: 'alert' }, message || '');
  const form = h('form', { class: 'signin', onsubmit: async (event) => {
    event.preventDefault();
    const response = await fetch('/api/session', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ token: input.value }), credentials: 'same-origin' });
    if (response.ok) { me = await response.json(); showUser(); route(); }
    else error.textContent = (await response.json().catch(() => ({}))).detail || 'Sign-in failed';
  } },
  h('h1', {}, 'Sign in'),
  h('label', { for: 'token' }, 'API key or access token', input),
  error,
  h('button', { class: 'primary', type: 'submit' }, 'Sign in'));
  main.replaceChildren(form);
  input.focus();
}

function showUser() {
  userBox.replaceChildren();
  if (!me) return;
  userBox.append(`${me.name} (${me.role})`, h('button', { type: 'button', onclick: async () => {
    await fetch('/api/session', { method: 'DELETE', credentials: 'same-origin' });
    me = null; showUser(); signInForm('Signed out.');
  } }, 'Sign out'));
}

// ------------------------------------------------------------------ overview

function changeText(tile) {
  if (tile.change === undefined || tile.change === null) return h('span', { class: 'change same' }, 'no previous run');
  const arrow = tile.change > 0 ? '▲' : tile.change < 0 ? '▼' : '■';
  const words = { better: 'better', worse: 'worse', same: 'no change' }[tile.direction];
  return h('span', { class: `change ${tile.direction}` }, `${arrow} ${tile.change > 0 ? '+' : ''}${tile.change.toFixed(2)} pts vs previous run (${words})`);
}

async function overview() {
  const data = await api('/api/overview?runs=12');
  const run = data.run;
  main.replaceChildren(
    h('h1', {}, 'Overview'),
    h('p', {}, run ? `Latest run ${run.runId}, evaluated ${run.evaluatedAt.slice(0, 16).replace('T', ' ')} UTC over ${fmt.format(run.patients)} patients. Alerts and care gaps: lower is better.` : 'No batch run has been published yet.'),
  );
  main.append(measureTiles(data.measures));
  main.append(h('h2', {}, 'Rules: alerts and care gaps'));
  const grid = h('div', { class: 'tiles' });
  main.append(grid);
  for (const tile of data.tiles) {
    const canvas = h('canvas', { role: 'img', 'aria-label': `Trend of ${tile.title} over ${tile.trend.length} runs: ${tile.trend.map((p) => pct(p.rate)).join(', ')}` });
    const target = tile.kind === 'care-gap' ? `#/worklist?rule=${encodeURIComponent(tile.ruleId)}` : `#/alerts?rule=${encodeURIComponent(tile.ruleId)}`;
    grid.append(h('article', { class: 'tile', 'data-rule': tile.ruleId },
      h('span', { class: 'kind' }, tile.kind === 'care-gap' ? 'Care gap' : 'Alert'),
      h('h2', {}, h('a', { href: target }, tile.title)),
      h('span', { class: 'value' }, fmt.format(tile.latest.count)),
      h('span', { class: 'rate' }, `${fmt.format(tile.latest.patientsFlagged)} patients, ${pct(tile.latest.rate)} of evaluated`),
      changeText(tile),
      h('div', { class: 'spark' }, canvas)));
    chart(canvas, {
      type: 'line',
      data: { labels: tile.trend.map((p) => p.evaluatedAt.slice(0, 10)), datasets: [{ data: tile.trend.map((p) => +(p.rate * 100).toFixed(2)), borderColor: '#0b5cad', pointRadius: 2, borderWidth: 2 }] },
      options: { plugins: { legend: { display: false }, tooltip: { callbacks: { label: (c) => `${c.parsed.y}%` } } }, scales: { x: { display: false }, y: { display: false, beginAtZero: true } } },
    });
  }
  status(`${data.measures.tiles.length} measure tiles, ${data.tiles.length} rule tiles.`);
}

const notationText = (n) => (n === 'decrease' ? 'Lower is better' : 'Higher is better');

/** measureTiles renders one tile per measure: rate, numerator/denominator, change (by improvement notation), trend. */
function measureTiles(measures) {
  const section = h('section', { 'aria-labelledby': 'measures-heading' }, h('h2', { id: 'measures-heading' }, 'Quality measures'));
  if (!measures.available) {
    section.append(h('div', { class: 'tiles' }, h('article', { class: 'tile pending' }, h('span', { class: 'kind' }, 'Measures'), h('h2', {}, 'eCQM measures'), h('p', {}, measures.note))));
    return section;
  }
  const grid = h('div', { class: 'tiles' });
  for (const tile of measures.tiles) {
    const canvas = h('canvas', { role: 'img', 'aria-label': `Rate of ${tile.title} over ${tile.trend.length} runs: ${tile.trend.map((p) => pct(p.rate)).join(', ')}` });
    grid.append(h('article', { class: 'tile measure', 'data-measure': tile.measureId },
      h('span', { class: 'kind' }, `Measure · ${notationText(tile.improvementNotation).toLowerCase()}`),
      h('h2', {}, h('a', { href: `#/measure?${query({ id: tile.measureId })}` }, tile.title)),
      h('span', { class: 'value' }, pct(tile.latest.rate)),
      h('span', { class: 'rate' }, `${fmt.format(tile.latest.numerator)} of ${fmt.format(tile.latest.denominator)} patients (numerator / denominator)`),
      changeText(tile),
      h('div', { class: 'spark' }, canvas)));
    sparkline(canvas, tile.trend);
  }
  section.append(grid);
  return section;
}

function sparkline(canvas, trend) {
  chart(canvas, {
    type: 'line',
    data: { labels: trend.map((p) => p.evaluatedAt.slice(0, 10)), datasets: [{ data: trend.map((p) => (p.rate === null ? null : +(p.rate * 100).toFixed(2))), borderColor: '#0b5cad', pointRadius: 2, borderWidth: 2 }] },
    options: { plugins: { legend: { display: false }, tooltip: { callbacks: { label: (c) => `${c.parsed.y}%` } } }, scales: { x: { display: false }, y: { display: false, beginAtZero: true } } },
  });
}

// ------------------------------------------------------------------ lists (worklist, alerts)

const LISTS = {
  worklist: {
    title: 'Care-gap worklist', api: '/api/care-gaps', defaultSort: 'due_date',
    columns: [
      ['patient_name', 'Patient', 'patient'], ['age', 'Age', 'age', 'num'], ['gender', 'Gender'], ['rule_id', 'Rule', 'rule'], ['missing', 'Missing'],
      ['due_date', 'Due', 'due_date'], ['measure', 'Measure', 'measure'], ['practitioner_name', 'Practitioner', 'practitioner'],
    ],
    filters: ['rule', 'practitioner', 'dueFrom', 'dueTo', 'ageMin', 'ageMax'],
  },
  alerts: {
    title: 'Alerts', api: '/api/alerts', defaultSort: 'severity',
    columns: [
      ['severity', 'Severity', 'severity'], ['patient_name', 'Patient', 'patient'], ['age', 'Age', 'age', 'num'], ['rule_id', 'Rule', 'rule'],
      ['message', 'Message'], ['practitioner_name', 'Practitioner', 'practitioner'],
    ],
    filters: ['rule', 'practitioner', 'ageMin', 'ageMax'],
  },
};

async function listPage(name, params) {
  const spec = LISTS[name];
  if (!me.patientLevel) {
    main.replaceChildren(h('h1', {}, spec.title), h('p', {}, `Your role (${me.role}) may not see patient-level lists.`));
    return;
  }
  const state = { sort: spec.defaultSort, order: 'asc', limit: 50, offset: 0, ...Object.fromEntries(params) };
  const [rules, practitioners] = await Promise.all([api('/api/rules/stats?limit=1000'), api('/api/practitioners?limit=1000')]);
  const field = (id, label, control) => h('label', { for: id }, label, control);
  const option = (value, text, selected) => h('option', { value, selected: selected || undefined }, text);
  const controls = {
    rule: field('f-rule', 'Rule', h('select', { id: 'f-rule', name: 'rule' }, option('', 'All rules'), rules.items.map((r) => option(r.rule_id, r.rule_id, state.rule === r.rule_id)))),
    practitioner: field('f-practitioner', 'Practitioner', h('select', { id: 'f-practitioner', name: 'practitioner' }, option('', 'All practitioners'), option('none', 'Not attributed', state.practitioner === 'none'),
      practitioners.items.map((p) => option(p.practitioner_id, `${p.practitioner_name ?? p.practitioner_id} (${p.patients})`, state.practitioner === p.practitioner_id)))),
    dueFrom: field('f-dueFrom', 'Due from', h('input', { id: 'f-dueFrom', name: 'dueFrom', type: 'date', value: state.dueFrom })),
    dueTo: field('f-dueTo', 'Due to', h('input', { id: 'f-dueTo', name: 'dueTo', type: 'date', value: state.dueTo })),
    ageMin: field('f-ageMin', 'Age from', h('input', { id: 'f-ageMin', name: 'ageMin', type: 'number', min: 0, max: 150, value: state.ageMin })),
    ageMax: field('f-ageMax', 'Age to', h('input', { id: 'f-ageMax', name: 'ageMax', type: 'number', min: 0, max: 150, value: state.ageMax })),
  };
  const form = h('form', { class: 'filters', 'aria-label': 'Filters', onsubmit: (event) => {
    event.preventDefault();
    const data = new FormData(form);
    for (const key of spec.filters) state[key] = data.get(key) || undefined;
    state.offset = 0;
    navigate();
  } }, spec.filters.map((key) => controls[key]), h('button', { class: 'primary', type: 'submit' }, 'Apply filters'));

  const navigate = () => { location.hash = `#/${name}?${query({ ...state })}`; };
  const apiQuery = () => query({ ...state });
  const data = await api(`${spec.api}?${apiQuery()}`);
  const header = spec.columns.map(([, label, sortKey, cls]) => {
    const sorted = sortKey && state.sort === sortKey;
    const aria = sorted ? (state.order === 'asc' ? 'ascending' : 'descending') : undefined;
    const content = sortKey
      ? h('button', { type: 'button', onclick: () => { state.order = sorted && state.order === 'asc' ? 'desc' : 'asc'; state.sort = sortKey; state.offset = 0; navigate(); } },
        label, sorted ? (state.order === 'asc' ? ' ▲' : ' ▼') : '')
      : label;
    return h('th', { scope: 'col', class: cls, 'aria-sort': aria }, content);
  });
  const rows = data.items.map((item) => h('tr', {}, spec.columns.map(([key, , , cls]) => {
    const value = item[key];
    if (key === 'severity') return h('td', {}, h('span', { class: `badge sev-${value}` }, value));
    if (key === 'patient_name') return h('td', {}, value ?? '', h('br'), h('small', { class: 'note' }, item.patient_id));
    return h('td', { class: cls }, value ?? '–');
  })));
  const first = data.total === 0 ? 0 : data.offset + 1;
  const last = data.offset + data.items.length;
  const pager = h('nav', { class: 'pager', 'aria-label': 'Pages' },
    h('button', { type: 'button', disabled: !data.links.prev, onclick: () => { state.offset = Math.max(0, state.offset - state.limit); navigate(); } }, '← Previous'),
    h('span', {}, `Rows ${fmt.format(first)}–${fmt.format(last)} of ${fmt.format(data.total)} (${fmt.format(data.patients ?? 0)} patients)`),
    h('button', { type: 'button', disabled: !data.links.next, onclick: () => { state.offset += state.limit; navigate(); } }, 'Next →'),
    h('label', { for: 'f-limit' }, 'Rows per page ', h('select', { id: 'f-limit', onchange: (e) => { state.limit = Number(e.target.value); state.offset = 0; navigate(); } },
      [25, 50, 100, 200].map((n) => option(n, n, state.limit === n)))));
  const exportLinks = h('p', { class: 'exports' }, 'Export the filtered list: ',
    h('a', { href: data.links.export.csv, download: '' }, 'CSV'), h('a', { href: data.links.export.parquet, download: '' }, 'Parquet'), h('a', { href: data.links.export.arrow, download: '' }, 'Arrow'));
  main.replaceChildren(
    h('h1', {}, spec.title),
    h('p', {}, data.run ? `Run ${data.run.runId} (evaluated ${data.run.evaluatedAt.slice(0, 10)}).` : 'No batch run published yet.'),
    form, exportLinks, pager,
    h('div', { class: 'table-wrap' }, h('table', {}, h('caption', {}, `${spec.title}: ${fmt.format(data.total)} rows`), h('thead', {}, h('tr', {}, header)), h('tbody', {}, rows))));
  status(`Showing rows ${first}–${last} of ${data.total}.`);
}

// ------------------------------------------------------------------ rules, runs, measures

function table(caption, columns, items) {
  return h('div', { class: 'table-wrap' }, h('table', {}, h('caption', {}, caption),
    h('thead', {}, h('tr', {}, columns.map(([, label, cls]) => h('th', { scope: 'col', class: cls }, label)))),
    h('tbody', {}, items.map((item) => h('tr', {}, columns.map(([key, , cls, render]) => h('td', { class: cls }, render ? render(item[key], item) : item[key] ?? '–')))))));
}

async function rules(params) {
  const range = { from: params.get('from') || undefined, to: params.get('to') || undefined };
  const [stats, daily, reasons] = await Promise.all([
    api(`/api/rules/stats?${query({ ...range, limit: 1000 })}`), api(`/api/rules/daily?${query({ ...range, limit: 1000 })}`), api(`/api/rules/override-reasons?${query({ ...range, limit: 1000 })}`),
  ]);
  const canvas = h('canvas', { role: 'img', 'aria-label': 'Cards shown and batch alerts and care gaps per day, all rules; the tables below give the numbers.' });
  main.replaceChildren(
    h('h1', {}, 'Rule performance'),
    h('p', {}, `Cards shown ${stats.range.from} to ${stats.range.to} (UTC days); acceptance and override rates are over cards shown. Alerts and care gaps: latest run.`),
    table('Per rule', [
      ['rule_id', 'Rule'], ['cards_shown', 'Cards shown', 'num'], ['accepted', 'Accepted', 'num'], ['overridden', 'Overridden', 'num'],
      ['acceptance_rate', 'Acceptance', 'num', pct], ['override_rate', 'Override', 'num', pct], ['alerts_latest_run', 'Alerts (batch)', 'num'], ['care_gaps_latest_run', 'Care gaps (batch)', 'num'],
    ], stats.items),
    h('p', { class: 'exports' }, 'Export: ', h('a', { href: stats.links.export.csv, download: '' }, 'CSV'), h('a', { href: daily.links.export.csv, download: '' }, 'Daily CSV')),
    h('h2', {}, 'Per day'), h('div', { class: 'chart-box' }, canvas),
    h('h2', {}, 'Override reasons'),
    reasons.items.length ? table('Override reasons per rule', [['rule_id', 'Rule'], ['override_code', 'Code'], ['override_display', 'Reason'], ['count', 'Count', 'num']], reasons.items) : h('p', { class: 'note' }, 'No overrides in this range.'));
  const days = [...new Set(daily.items.map((d) => d.day))].sort();
  const sum = (key) => days.map((day) => daily.items.filter((d) => d.day === day).reduce((n, d) => n + d[key], 0));
  chart(canvas, {
    type: 'bar',
    data: { labels: days, datasets: [
      { label: 'Cards shown', data: sum('cards_shown'), backgroundColor: '#0b5cad' },
      { label: 'Alerts (batch)', data: sum('alerts'), backgroundColor: '#9a6700' },
      { label: 'Care gaps (batch)', data: sum('care_gaps'), backgroundColor: '#57606a' },
    ] },
  });
  status(`${stats.items.length} rules.`);
}

async function runs() {
  const data = await api('/api/runs?limit=100');
  const errors = await api('/api/runs/error-summary?limit=100');
  const canvas = h('canvas', { role: 'img', 'aria-label': 'Alerts, care gaps and errors per run; the table gives the numbers.' });
  main.replaceChildren(
    h('h1', {}, 'Run history'),
    h('div', { class: 'chart-box' }, canvas),
    table(`Batch runs (${data.total})`, [
      ['run_id', 'Run'], ['status', 'Status'], ['evaluated_at', 'Evaluated at'], ['duration_ms', 'Duration (s)', 'num', (v) => (v / 1000).toFixed(1)],
      ['knowledge_version', 'Knowledge'], ['patients', 'Patients', 'num'], ['alerts', 'Alerts', 'num'], ['care_gaps', 'Care gaps', 'num'], ['errors', 'Errors', 'num'],
    ], data.items),
    h('h2', {}, 'Errors of the latest run'),
    errors.items.length ? table('Errors per rule', [['rule_id', 'Rule'], ['errors', 'Errors', 'num'], ['patients', 'Patients', 'num'], ['example', 'Example']], errors.items) : h('p', {}, 'No errors.'));
  const ordered = [...data.items].reverse();
  chart(canvas, {
    type: 'line',
    data: { labels: ordered.map((r) => r.evaluated_at.slice(0, 10)), datasets: [
      { label: 'Alerts', data: ordered.map((r) => r.alerts), borderColor: '#9a6700', pointStyle: 'triangle' },
      { label: 'Care gaps', data: ordered.map((r) => r.care_gaps), borderColor: '#0b5cad', pointStyle: 'circle' },
      { label: 'Errors', data: ordered.map((r) => r.errors), borderColor: '#b42318', pointStyle: 'rect', borderDash: [4, 3] },
    ] },
  });
  status(`${data.total} runs.`);
}

async function measures() {
  const data = await api('/api/measures');
  main.replaceChildren(h('h1', {}, 'Measures'), data.available
    ? table('Measures, latest run', [
      ['title', 'Measure', '', (v, t) => h('a', { href: `#/measure?${query({ id: t.measureId })}` }, v)], ['improvementNotation', 'Improvement', '', notationText],
      ['latest', 'Numerator', 'num', (v) => fmt.format(v.numerator)], ['latest', 'Denominator', 'num', (v) => fmt.format(v.denominator)], ['latest', 'Rate', 'num', (v) => pct(v.rate)],
      ['change', 'Change', '', (_v, t) => changeText(t)],
    ], data.tiles)
    : h('p', { class: 'note' }, data.note));
  status(data.available ? `${data.tiles.length} measures.` : '');
}

const POPULATION_LABELS = {
  'initial-population': 'Initial population', denominator: 'Denominator', 'denominator-exclusion': 'Denominator exclusions',
  'denominator-exception': 'Denominator exceptions', numerator: 'Numerator', 'numerator-exclusion': 'Numerator exclusions',
};
const BREAKDOWN_TITLES = { stratum: 'By stratum', practitioner: 'By practitioner', organization: 'By organization', location: 'By location' };

/** barFilter is the patient-list filter of a breakdown bar. */
function barFilter(item) {
  if (item.dimension === 'stratum') return { group: item.group_id, stratifier: item.stratifier_id, stratum: item.key };
  return { group: item.group_id, [item.dimension]: item.key };
}

/** measurePage: the rate by stratum and by practitioner/organization/location, a chart per breakdown, every number linked to its patients. */
async function measurePage(params) {
  const id = params.get('id');
  const run = params.get('run') || undefined;
  const [measure, ...breakdowns] = await Promise.all([
    api(`/api/measures/${encodeURIComponent(id)}`),
    ...Object.keys(BREAKDOWN_TITLES).map((by) => api(`/api/measures/${encodeURIComponent(id)}/breakdown?${query({ by, run, limit: 1000 })}`)),
  ]);
  const patientsLink = (filter, population, n) => (me.patientLevel
    ? h('a', { href: `#/measure-patients?${query({ id, run, population, ...filter })}`, 'aria-label': `${fmt.format(n)} patients: ${POPULATION_LABELS[population]}` }, fmt.format(n))
    : fmt.format(n));
  main.replaceChildren(h('h1', {}, measure.title), h('p', { class: 'note' }, `${id} · ${notationText(measure.tiles[0]?.improvementNotation)} · ` +
    (measure.run ? `summary MeasureReport of run ${measure.run.runId} (evaluated ${measure.run.evaluatedAt.slice(0, 10)})` : 'no run')));
  for (const tile of measure.tiles) {
    const group = measure.summary?.group?.find((g) => g.id === tile.groupId);
    const counts = Object.fromEntries((group?.population ?? []).map((p) => [p.code.coding[0].code, p.count]));
    main.append(h('section', { class: 'summary', 'aria-label': `Group ${tile.groupId}` },
      h('p', { class: 'big' }, h('span', { class: 'value' }, pct(tile.latest.rate)), ' ', changeText(tile)),
      h('dl', { class: 'populations' }, Object.entries(counts).flatMap(([code, n]) => [h('dt', {}, POPULATION_LABELS[code] ?? code), h('dd', {}, patientsLink({ group: tile.groupId }, code, n))]))));
  }
  breakdowns.forEach((data, i) => {
    const by = Object.keys(BREAKDOWN_TITLES)[i];
    const items = data.items;
    const section = h('section', { class: 'breakdown', 'data-by': by }, h('h2', {}, BREAKDOWN_TITLES[by]));
    main.append(section);
    if (!items.length) { section.append(h('p', { class: 'note' }, 'No data for this breakdown.')); return; }
    const baseLabel = (item) => (by === 'stratum' && item.label === item.stratifier ? item.label : by === 'stratum' ? `${item.stratifier}: ${item.label}` : item.label);
    // Two units with one name (e.g. two clinics named alike) are told apart by their id.
    const named = items.reduce((m, item) => m.set(baseLabel(item), (m.get(baseLabel(item)) ?? 0) + 1), new Map());
    const labelOf = (item) => (named.get(baseLabel(item)) > 1 && item.key !== 'none' ? `${baseLabel(item)} (${String(item.key).slice(0, 8)})` : baseLabel(item));
    const canvas = h('canvas', { role: 'img', 'aria-label': `Rate ${BREAKDOWN_TITLES[by].toLowerCase()}: ${items.map((item) => `${labelOf(item)} ${pct(item.score)}`).join('; ')}. The table below gives the numbers and links to the patients.` });
    section.append(
      h('div', { class: 'chart-box', style: undefined }, canvas),
      h('p', { class: 'exports' }, 'Export this breakdown: ', h('a', { href: data.links.export.csv, download: '' }, 'CSV'), h('a', { href: data.links.export.parquet, download: '' }, 'Parquet'), h('a', { href: data.links.export.arrow, download: '' }, 'Arrow')),
      table(`${BREAKDOWN_TITLES[by]} (${items.length})`, [
        ['label', by === 'stratum' ? 'Stratum' : 'Name', '', (_v, item) => labelOf(item)],
        ['denominator', 'Denominator', 'num', (v, item) => patientsLink(barFilter(item), 'denominator', v)],
        ['denominator_exclusion', 'Excluded', 'num', (v, item) => patientsLink(barFilter(item), 'denominator-exclusion', v)],
        ['numerator', 'Numerator', 'num', (v, item) => patientsLink(barFilter(item), 'numerator', v)],
        ['score', 'Rate', 'num', pct],
      ], items));
    chart(canvas, {
      type: 'bar',
      data: { labels: items.map(labelOf), datasets: [{ label: 'Rate (%)', data: items.map((item) => (item.score === null ? null : +(item.score * 100).toFixed(1))), backgroundColor: '#0b5cad' }] },
      options: {
        indexAxis: 'y',
        scales: { x: { min: 0, max: 100, title: { display: true, text: `Rate (%) · ${notationText(measure.tiles[0]?.improvementNotation).toLowerCase()}` } } },
        plugins: { legend: { display: false }, tooltip: { callbacks: { label: (c) => `${c.parsed.x}% (${items[c.dataIndex].numerator} of ${items[c.dataIndex].denominator}); click for the patients` } } },
        onClick: (_event, elements) => {
          if (!elements.length || !me.patientLevel) return;
          location.hash = `#/measure-patients?${query({ id, run, population: 'denominator', ...barFilter(items[elements[0].index]) })}`;
        },
        onHover: (event, elements) => { event.native.target.style.cursor = elements.length ? 'pointer' : 'default'; },
      },
    });
  });
  status(`${measure.title}: ${breakdowns.reduce((n, b) => n + b.items.length, 0)} bars.`);
}

const MEASURE_PATIENT_COLUMNS = [
  ['patient_name', 'Patient', 'patient'], ['age', 'Age', 'age', 'num'], ['gender', 'Gender'], ['practitioner_name', 'Practitioner', 'practitioner'],
  ['organization_name', 'Organization', 'organization'], ['denominator', 'Denominator', null, 'num'], ['denominator_exclusion', 'Excluded', null, 'num'], ['numerator', 'Numerator', null, 'num'],
];

/** measurePatients: the patients behind one number (population, stratum, practitioner …), paged server-side, exportable. */
async function measurePatients(params) {
  const id = params.get('id');
  if (!me.patientLevel) {
    main.replaceChildren(h('h1', {}, 'Patients'), h('p', {}, `Your role (${me.role}) may not see patient-level lists.`));
    return;
  }
  const state = { limit: 50, offset: 0, sort: 'patient', order: 'asc', ...Object.fromEntries(params) };
  delete state.id;
  const navigate = () => { location.hash = `#/measure-patients?${query({ id, ...state })}`; };
  const data = await api(`/api/measures/${encodeURIComponent(id)}/patients?${query(state)}`);
  const scope = [POPULATION_LABELS[state.population ?? 'initial-population'],
    state.stratifier ? `stratum ${state.stratifier} = ${state.stratum}` : '', state.practitioner ? `practitioner ${data.items[0]?.practitioner_name ?? state.practitioner}` : '',
    state.organization ? `organization ${data.items[0]?.organization_name ?? state.organization}` : '', state.location ? `location ${state.location}` : ''].filter(Boolean).join(', ');
  const header = MEASURE_PATIENT_COLUMNS.map(([, label, sortKey, cls]) => {
    const sorted = sortKey && state.sort === sortKey;
    return h('th', { scope: 'col', class: cls, 'aria-sort': sorted ? (state.order === 'asc' ? 'ascending' : 'descending') : undefined }, sortKey
      ? h('button', { type: 'button', onclick: () => { state.order = sorted && state.order === 'asc' ? 'desc' : 'asc'; state.sort = sortKey; state.offset = 0; navigate(); } }, label, sorted ? (state.order === 'asc' ? ' ▲' : ' ▼') : '')
      : label);
  });
  const rows = data.items.map((item) => h('tr', {}, MEASURE_PATIENT_COLUMNS.map(([key, , , cls]) => (key === 'patient_name'
    ? h('td', {}, item.patient_name ?? '', h('br'), h('small', { class: 'note' }, item.patient_id))
    : h('td', { class: cls }, item[key] ?? '–')))));
  const first = data.total === 0 ? 0 : data.offset + 1;
  const last = data.offset + data.items.length;
  main.replaceChildren(
    h('h1', {}, 'Patients'),
    h('p', {}, h('a', { href: `#/measure?${query({ id, run: params.get('run') || undefined })}` }, `← ${id}`), ` · ${scope}`, data.run ? ` · run ${data.run.runId}` : ''),
    h('p', { class: 'exports' }, 'Export this list: ', h('a', { href: data.links.export.csv, download: '' }, 'CSV'), h('a', { href: data.links.export.parquet, download: '' }, 'Parquet'), h('a', { href: data.links.export.arrow, download: '' }, 'Arrow')),
    h('nav', { class: 'pager', 'aria-label': 'Pages' },
      h('button', { type: 'button', disabled: !data.links.prev, onclick: () => { state.offset = Math.max(0, Number(state.offset) - Number(state.limit)); navigate(); } }, '← Previous'),
      h('span', {}, `Rows ${fmt.format(first)}–${fmt.format(last)} of ${fmt.format(data.total)} (${fmt.format(data.patients ?? 0)} patients)`),
      h('button', { type: 'button', disabled: !data.links.next, onclick: () => { state.offset = Number(state.offset) + Number(state.limit); navigate(); } }, 'Next →')),
    h('div', { class: 'table-wrap' }, h('table', {}, h('caption', {}, `Patients: ${scope} (${fmt.format(data.total)})`), h('thead', {}, h('tr', {}, header)), h('tbody', {}, rows))));
  status(`Showing patients ${first}–${last} of ${data.total}.`);
}

// ------------------------------------------------------------------ routing

const PAGES = { overview, worklist: (p) => listPage('worklist', p), alerts: (p) => listPage('alerts', p), rules, runs, measures, measure: measurePage, 'measure-patients': measurePatients };
/** Pages reached from another page: the nav marks their parent. */
const PARENT = { measure: 'measures', 'measure-patients': 'measures' };

async function route() {
  const [path, search] = (location.hash.replace(/^#\/?/, '') || 'overview').split('?');
  const page = PAGES[path] ? path : 'overview';
  for (const a of document.querySelectorAll('nav a[data-page]')) {
    if (a.dataset.page === (PARENT[page] ?? page)) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  destroyCharts();
  status('Loading…');
  try {
    if (!me) { me = await api('/api/me'); showUser(); }
    await PAGES[page](new URLSearchParams(search || ''));
    document.title = `${document.querySelector('main h1')?.textContent ?? 'Cairn'} · Cairn dashboards`;
    if (document.activeElement === document.body || !main.contains(document.activeElement)) main.focus({ preventScroll: true });
  } catch (error) {
    if (error instanceof HttpError && error.status === 401) { me = null; showUser(); status(''); signInForm(); return; }
    main.replaceChildren(h('h1', {}, 'Something went wrong'), h('p', { class: 'error', role: 'alert' }, error.message));
    status('');
  }
}

window.addEventListener('hashchange', route);
route();

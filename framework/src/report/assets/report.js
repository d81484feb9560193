/*
 * warmup report: the browser side of `warmup report`.
 *
 * Renders the page from the data object embedded in
 * <script type="application/json" id="warmup-data">; its schema is documented in
 * framework/src/report/report_data.h. Sections: run headers (+ config diff), the
 * paper-style accuracy table, metric curves (Chart.js when it was inlined, tables
 * otherwise) and a completion browser whose filters live in the URL hash
 * (#samples&stage=1:rl&task=math&step=3&correct=1&rmin=0&rmax=1&finish=length&q=text&view=groups&page=2).
 * In live mode (`warmup report --serve`) it polls data.api and updates runs, table
 * and curves in place. Data is only ever rendered with textContent: completions
 * are model output and may contain HTML.
 */
(() => {
  'use strict';

  // ---------------------------------------------------------------- errors

  function reportError(message) {
    const box = document.getElementById('report-errors');
    if (box) box.append(el('div', null, message));
    console.error(message);
  }
  window.addEventListener('error', (e) =>
    reportError(`Error: ${e.message}${e.lineno ? ` (line ${e.lineno})` : ''}`));
  window.addEventListener('unhandledrejection', (e) =>
    reportError(`Error: ${(e.reason && e.reason.message) || e.reason}`));

  // ---------------------------------------------------------------- helpers

  const $ = (selector) => document.querySelector(selector);

  /** el('td', {class: 'x', 'data-key': k, onclick: f}, 'text', node, ...): children are text or nodes. */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === 'class') node.className = value;
      else if (name.startsWith('on')) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? '' : String(value));
    }
    for (const child of children.flat()) {
      if (child !== null && child !== undefined && child !== false) node.append(child);
    }
    return node;
  }

  const pad2 = (n) => String(n).padStart(2, '0');

  function fmtTime(ts) {
    if (ts === null || ts === undefined) return '-';
    const d = new Date(ts * 1000);
    return `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())} ` +
      `${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`;
  }

  const clock = () => fmtTime(Date.now() / 1000).slice(11);

  function fmtDuration(seconds) {
    if (seconds === null || !Number.isFinite(seconds)) return '-';
    const s = Math.max(0, Math.round(seconds));
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    if (h) return `${h}h ${pad2(m)}m`;
    return m ? `${m}m ${pad2(s % 60)}s` : `${s}s`;
  }

  function span(started, ended, status) {
    if (started === null || started === undefined) return '-';
    if (ended !== null && ended !== undefined) return fmtDuration(ended - started);
    return status === 'running' ? `${fmtDuration(Date.now() / 1000 - started)} so far` : '-';
  }

  /** Metric values: 5 significant digits, exponent for very small or large magnitudes. */
  function fmtNum(v) {
    if (v === null || v === undefined) return '-';
    if (typeof v !== 'number') return String(v);
    if (Number.isInteger(v)) return String(v);
    const a = Math.abs(v);
    if (a < 1e-4 || a >= 1e7) return v.toExponential(3);
    return String(Number(v.toPrecision(5)));
  }

  const fmtParam = (v) => (v !== null && typeof v === 'object' ? JSON.stringify(v) : String(v));

  function badge(status) {
    return el('span', {class: `badge status-${status}`}, status);
  }

  function debounce(fn, ms) {
    let timer = 0;
    return (...args) => {
      clearTimeout(timer);
      timer = setTimeout(() => fn(...args), ms);
    };
  }

  const nextTask = () => new Promise((resolve) => setTimeout(resolve, 0));

  // ---------------------------------------------------------------- data

  const data = JSON.parse(document.getElementById('warmup-data').textContent);

  const multiRun = () => data.runs.length > 1;
  const seriesId = (run, stage) => `${run}:${stage}`;
  const seriesLabel = (run, stage) => (multiRun() ? `run ${run} ${stage}` : stage);

  const PALETTE = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd',
    '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];
  const colours = new Map();

  /** A stable colour per (run, stage), shared by every chart. */
  function colourOf(id) {
    if (!colours.has(id)) colours.set(id, PALETTE[colours.size % PALETTE.length]);
    return colours.get(id);
  }

  function fade(hex, alpha) {
    const n = parseInt(hex.slice(1), 16);
    return `rgba(${n >> 16}, ${(n >> 8) & 255}, ${n & 255}, ${alpha})`;
  }

  function runHasData(runId) {
    return data.series.some((s) => s.run === runId && s.step.length > 0) ||
      Boolean(data.samples && data.samples.rows.some((r) => r.run === runId));
  }

  // ---------------------------------------------------------------- header and runs

  function renderHeader() {
    const meta = [`generated ${fmtTime(data.generated_at)}`, `warmup ${data.warmup_version}`,
      `store ${data.store}`, `${data.runs.length} run${data.runs.length === 1 ? '' : 's'}`];
    $('#page-meta').textContent = meta.join(' · ');
  }

  function factList(run) {
    const facts = [
      ['started', fmtTime(run.started_at)],
      ['duration', span(run.started_at, run.ended_at, run.status)],
      ['host', run.pid ? `${run.host} (pid ${run.pid})` : run.host],
      ['device', run.device],
      ['torch', run.torch_version],
      ['git commit', run.git_commit],
      ['warmup', run.warmup_version],
      ['seed', run.seed],
      ['tags', (run.tags || []).join(', ')],
      ['overrides', (run.overrides || []).join('  ')],
      ['config file', run.config_file],
      ['run dir', run.run_dir],
    ];
    if (run.resumes) facts.push(['resumes', run.resumes]);
    return el('dl', {class: 'facts'}, facts.map(([name, value]) =>
      el('div', {class: `fact fact-${name.replace(/ /g, '-')}`},
        el('dt', null, name),
        el('dd', null, value === null || value === undefined || value === '' ? '-' : String(value)))));
  }

  function stagesTable(run) {
    return el('table', {class: 'stages-table'},
      el('caption', null, 'stages'),
      el('thead', null, el('tr', null, ['idx', 'name', 'algorithm', 'status', 'duration', 'error']
        .map((h) => el('th', null, h)))),
      el('tbody', null, (run.stages || []).map((s) =>
        el('tr', {'data-stage': s.name},
          el('td', {class: 'num'}, String(s.idx)),
          el('td', null, s.name),
          el('td', null, s.algorithm),
          el('td', null, badge(s.status)),
          el('td', null, span(s.started_at, s.ended_at, s.status)),
          el('td', {class: s.error ? 'error-text' : ''}, s.error || '')))));
  }

  function pluginsTable(run) {
    return el('table', {class: 'plugins-table'},
      el('caption', null, 'plugins'),
      el('thead', null, el('tr', null, ['kind', 'name', 'version', 'sha256', 'library']
        .map((h) => el('th', null, h)))),
      el('tbody', null, (run.plugins || []).map((p) =>
        el('tr', null,
          el('td', null, p.kind),
          el('td', null, p.name),
          el('td', null, p.plugin_version),
          el('td', {class: 'mono', title: p.library_sha256}, (p.library_sha256 || '').slice(0, 12)),
          el('td', {class: 'mono path'}, p.library_path)))));
  }

  function runCard(run) {
    const card = el('article', {class: 'run card', id: `run-${run.id}`, 'data-run': run.id},
      el('h2', {class: 'run-title'},
        el('span', {class: 'run-experiment'}, run.experiment),
        el('span', {class: 'sep'}, ' / '),
        el('span', {class: 'run-name'}, run.name),
        el('span', {class: 'run-id'}, ` #${run.id}`),
        badge(run.status)));
    const empty = !runHasData(run.id);
    if (empty) {
      card.append(el('p', {class: 'notice no-data'},
        `Run ${run.id} (${run.status}) recorded no metrics or samples${run.error ? `: ${run.error}` : ''}`));
    } else if (run.error) {
      card.append(el('div', {class: 'error-box run-error'},
        el('strong', null, `Run ${run.id} ${run.status}: `), el('span', null, run.error)));
    }
    card.append(factList(run));
    const tables = el('div', {class: 'run-tables'}, stagesTable(run));
    if ((run.plugins || []).length) tables.append(pluginsTable(run));
    card.append(tables);
    const lines = (run.config || '').split('\n').length;
    card.append(el('details', {class: 'config', 'data-run': run.id},
      el('summary', null, `config (resolved TOML, ${lines} lines)`),
      el('pre', {class: 'text'}, run.config || '')));
    return card;
  }

  function configDiff() {
    const keys = new Set();
    for (const run of data.runs) Object.keys(run.params || {}).forEach((k) => keys.add(k));
    const MISSING = '\u0000';
    const valueOf = (run, key) =>
      (run.params && Object.prototype.hasOwnProperty.call(run.params, key) ? fmtParam(run.params[key]) : MISSING);
    const differing = [...keys].sort().filter((key) => new Set(data.runs.map((r) => valueOf(r, key))).size > 1);
    const box = el('div', {class: 'card config-diff-box'}, el('h3', null, 'Config diff'));
    if (!differing.length) {
      box.append(el('p', {class: 'empty'}, 'All runs have the same params.'));
      return box;
    }
    box.append(el('table', {id: 'config-diff'},
      el('thead', null, el('tr', null, el('th', null, 'key'),
        data.runs.map((r) => el('th', null, `run ${r.id} ${r.name}`)))),
      el('tbody', null, differing.map((key) => el('tr', {'data-key': key},
        el('td', {class: 'mono'}, key),
        data.runs.map((r) => {
          const v = valueOf(r, key);
          return el('td', {class: 'mono'}, v === MISSING ? '-' : v);
        }))))));
    return box;
  }

  function renderRuns() {
    const root = $('#runs');
    const open = new Set([...root.querySelectorAll('details.config[open]')].map((d) => d.dataset.run));
    root.replaceChildren();
    if (!data.runs.length) {
      root.append(el('p', {class: 'empty big', id: 'no-runs'}, 'No runs selected'));
      return;
    }
    for (const run of data.runs) root.append(runCard(run));
    if (multiRun()) root.append(configDiff());
    root.querySelectorAll('details.config').forEach((d) => { d.open = open.has(d.dataset.run); });
  }

  // ---------------------------------------------------------------- paper-style table

  function cell(c, attrs) {
    const td = el('td', Object.assign({class: 'num'}, attrs));
    if (!c || c.mean === null || c.mean === undefined) {
      td.textContent = '-';
      return td;
    }
    td.dataset.mean = String(c.mean);
    if (c.std !== null && c.std !== undefined) td.dataset.std = String(c.std);
    // Percent with one decimal, as the paper prints accuracy; no ± for a single sample.
    const pct = (v) => (100 * v).toFixed(1);
    td.textContent = c.std === null || c.std === undefined ? pct(c.mean) : `${pct(c.mean)} ± ${pct(c.std)}`;
    td.title = `${c.count ?? '?'} completions` + (c.n_samples ? ` · ${c.n_samples} sample(s) per example` : '') +
      ` · ${c.key || ''}`;
    return td;
  }

  /** Bold the best mean of every column when there is something to compare. */
  function markBest(table) {
    const rows = [...table.tBodies[0].rows];
    if (rows.length < 2) return;
    const columns = rows[0].cells.length;
    for (let i = 1; i < columns; i++) {
      const cells = rows.map((r) => r.cells[i]).filter((c) => c.dataset.mean !== undefined);
      const best = Math.max(...cells.map((c) => Number(c.dataset.mean)));
      cells.forEach((c) => c.classList.toggle('best', Number(c.dataset.mean) === best));
    }
  }

  function renderTable() {
    const root = $('#results');
    root.replaceChildren(el('h2', null, 'Results'));
    const table = data.table || {tasks: [], rows: [], breakdowns: []};
    if (!table.rows || !table.rows.length) {
      root.append(el('p', {class: 'empty', id: 'no-eval'},
        'No evaluation metrics recorded (no eval/<task>/accuracy keys)'));
      return;
    }
    const grid = el('div', {class: 'tables-grid'});
    const paper = el('table', {id: 'paper-table'},
      el('caption', null, 'accuracy % (mean ± std over samples)'),
      el('thead', null, el('tr', null, el('th', null, multiRun() ? 'run / stage' : 'stage'),
        table.tasks.map((t) => el('th', {class: 'num'}, t)))),
      el('tbody', null, table.rows.map((row) => el('tr', {'data-row': row.label},
        el('th', null, row.label),
        table.tasks.map((t) => cell(row.cells[t], {'data-task': t, 'data-row': row.label}))))));
    markBest(paper);
    grid.append(el('div', {class: 'card table-card'}, paper));
    for (const b of table.breakdowns || []) {
      const t = el('table', {class: 'breakdown-table', 'data-task': b.task, 'data-group': b.group},
        el('caption', null, `${b.task} by ${b.group}`),
        el('thead', null, el('tr', null, el('th', null, multiRun() ? 'run / stage' : 'stage'),
          b.values.map((v) => el('th', {class: 'num'}, `${b.group}=${v}`)))),
        el('tbody', null, b.rows.map((row) => el('tr', {'data-row': row.label},
          el('th', null, row.label),
          b.values.map((v) => cell(row.cells[v],
            {'data-task': b.task, 'data-group': b.group, 'data-value': v, 'data-row': row.label}))))));
      markBest(t);
      grid.append(el('div', {class: 'card table-card'}, t));
    }
    root.append(grid);
  }

  // ---------------------------------------------------------------- curves

  const GROUPS = [
    ['loss', 'Loss & optimisation', (k) => /^train\/(loss|grad_norm|learning_rate|lr|epoch)$/.test(k)],
    ['reward', 'Reward', (k) => /^train\/(reward|rewards\/|frac_reward_zero_std$|accuracy)/.test(k)],
    ['completions', 'Completions', (k) => k.startsWith('train/completions/')],
    ['policy', 'Policy', (k) => k.startsWith('train/clip_ratio/') || k === 'train/kl' || k === 'train/entropy'],
    ['time', 'Time & throughput',
      (k) => k.startsWith('train/time/') || k.startsWith('train/generation/') || k.includes('tokens_per')],
    ['eval', 'Evaluation', (k) => k.startsWith('eval/')],
    ['other', 'Other', () => true],
  ];
  const KEY_ORDER = ['train/loss', 'train/grad_norm', 'train/learning_rate', 'train/lr', 'train/epoch',
    'train/reward', 'train/reward_std'];

  function compareKeys(a, b) {
    const ia = KEY_ORDER.indexOf(a);
    const ib = KEY_ORDER.indexOf(b);
    if (ia !== ib) return (ia < 0 ? KEY_ORDER.length : ia) - (ib < 0 ? KEY_ORDER.length : ib);
    return a < b ? -1 : a > b ? 1 : 0;
  }

  const curves = {
    useCharts: false,
    smoothing: 0,
    xAxis: 'step',          // 'step' | 'wall'
    logY: false,            // log-scale y where every value is > 0 (a loss over thousands of steps)
    hidden: new Set(),      // series ids ("run:stage") switched off
    filter: '',
    charts: new Map(),      // key -> entry {key, div, grid, note, chart | table, pairs, series}
    groups: new Map(),      // group id -> {section, grid}
  };

  /** Series with at least one point, by key (keys in display order). */
  function seriesByKey() {
    const byKey = new Map();
    for (const s of data.series) {
      if (!s.step.length) continue;
      if (!byKey.has(s.key)) byKey.set(s.key, []);
      byKey.get(s.key).push(s);
    }
    return new Map([...byKey].sort((a, b) => compareKeys(a[0], b[0])));
  }

  /** First wall time of every (run, stage): the origin of the "minutes" x axis. */
  function stageOrigins() {
    const origins = new Map();
    for (const s of data.series) {
      if (!s.wall_time.length) continue;
      const id = seriesId(s.run, s.stage);
      origins.set(id, Math.min(origins.get(id) ?? Infinity, s.wall_time[0]));
    }
    return origins;
  }

  function toPoints(s, origins) {
    const points = new Array(s.step.length);
    const origin = origins.get(seriesId(s.run, s.stage));
    for (let i = 0; i < s.step.length; i++) {
      const x = curves.xAxis === 'step' ? s.step[i] : (s.wall_time[i] - origin) / 60;
      points[i] = {x, y: s.value[i], s: s.step[i]};
    }
    return points;
  }

  /** [min, max] over arrays of values, ignoring nulls; [null, null] when there is none. */
  function extent(arrays) {
    let lo = Infinity;
    let hi = -Infinity;
    for (const values of arrays) {
      for (const v of values) {
        if (v === null) continue;
        if (v < lo) lo = v;
        if (v > hi) hi = v;
      }
    }
    return lo <= hi ? [lo, hi] : [null, null];
  }

  /** TensorBoard's debiased exponential moving average; gaps (null) stay gaps. */
  function smoothPoints(points, weight) {
    const out = new Array(points.length);
    let last = 0;
    let n = 0;
    for (let i = 0; i < points.length; i++) {
      const p = points[i];
      if (p.y === null || !Number.isFinite(p.y)) {
        out[i] = {x: p.x, y: null, s: p.s, r: p.y};
        continue;
      }
      last = last * weight + (1 - weight) * p.y;
      n += 1;
      out[i] = {x: p.x, y: last / (1 - Math.pow(weight, n)), s: p.s, r: p.y};
    }
    return out;
  }

  /**
   * Give a dataset new points. The decimation plugin replaces dataset.data by an
   * accessor (and may later leave it read-only), so start again from a plain property.
   */
  function setData(dataset, points) {
    delete dataset._data;
    delete dataset._decimated;
    Object.defineProperty(dataset, 'data', {value: points, writable: true, configurable: true, enumerable: true});
  }

  /** Points a raw dataset holds; while decimated, `data` reads the decimated copy and `_data` the full one. */
  const heldPoints = (dataset) => (dataset._data || dataset.data).length;

  /** Tooltip/hover mode: per visible dataset of the shown role, the point nearest to the cursor in x. */
  function nearestPerDataset(chart, event) {
    const role = curves.smoothing > 0 ? 'smooth' : 'raw';
    const items = [];
    for (const meta of chart.getSortedVisibleDatasetMetas()) {
      if (chart.data.datasets[meta.index].warmupRole !== role || !meta.data.length) continue;
      const points = meta.data;
      let lo = 0;
      let hi = points.length - 1;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (points[mid].x < event.x) lo = mid + 1;
        else hi = mid;
      }
      if (lo > 0 && Math.abs(points[lo - 1].x - event.x) < Math.abs(points[lo].x - event.x)) lo -= 1;
      const point = points[lo];
      if (point.skip || Math.abs(point.x - event.x) > 30) continue;
      items.push({element: point, datasetIndex: meta.index, index: lo});
    }
    return items;
  }

  const xTitle = () => (curves.xAxis === 'step' ? 'step' : "minutes since the stage's first point");

  function chartConfig() {
    return {
      type: 'line',
      data: {datasets: []},
      options: {
        animation: false,
        parsing: false,
        spanGaps: false,
        responsive: true,
        maintainAspectRatio: false,
        interaction: {mode: 'warmupNearestX', intersect: false, axis: 'x'},
        elements: {point: {radius: 0, hoverRadius: 3}, line: {borderWidth: 1.5}},
        scales: {
          x: {type: 'linear', title: {display: true, text: xTitle()},
            ticks: {maxTicksLimit: 7, precision: curves.xAxis === 'step' ? 0 : undefined}},
          y: {type: 'linear', ticks: {maxTicksLimit: 6}},
        },
        plugins: {
          decimation: {enabled: true, algorithm: 'lttb', samples: 800, threshold: 800},
          legend: {
            display: false,
            labels: {boxWidth: 10, boxHeight: 10, filter: (item, chartData) =>
              chartData.datasets[item.datasetIndex].warmupRole === 'raw'},
            onClick: (event, item, legend) =>
              toggleSeries(legend.chart.data.datasets[item.datasetIndex].warmupId),
          },
          tooltip: {
            callbacks: {
              title: (items) => {
                if (!items.length) return '';
                const p = items[0].raw;
                return curves.xAxis === 'step' ? `step ${p.s}` : `step ${p.s} · ${p.x.toFixed(2)} min`;
              },
              label: (item) => {
                const p = item.raw;
                const raw = item.dataset.warmupRole === 'smooth' ? ` (raw ${fmtNum(p.r)})` : '';
                return `${item.dataset.label}: ${fmtNum(p.y)}${raw}`;
              },
            },
          },
        },
      },
    };
  }

  function groupFor(key) {
    const id = GROUPS.find(([, , test]) => test(key))[0];
    return curves.groups.get(id);
  }

  function createEntry(key) {
    const group = groupFor(key);
    const entry = {key, pairs: new Map(), series: [], chart: null, table: null};
    entry.div = el('div', {class: 'chart card', 'data-key': key},
      el('div', {class: 'chart-title', title: key}, key));
    entry.note = el('div', {class: 'chart-note'});
    if (curves.useCharts) {
      const canvas = el('canvas', {role: 'img', 'aria-label': key});
      entry.div.append(el('div', {class: 'chart-canvas'}, canvas), entry.note);
      group.grid.append(entry.div);
      group.section.hidden = false;
      entry.chart = new Chart(canvas, chartConfig());
    } else {
      entry.table = el('table', {class: 'series-table'});
      entry.div.append(entry.table, entry.note);
      group.grid.append(entry.div);
      group.section.hidden = false;
    }
    curves.charts.set(key, entry);
    return entry;
  }

  function fillChart(entry, origins) {
    const chart = entry.chart;
    const smooth = curves.smoothing > 0;
    for (const s of entry.series) {
      const id = seriesId(s.run, s.stage);
      let pair = entry.pairs.get(id);
      if (!pair) {
        const common = {label: seriesLabel(s.run, s.stage), warmupId: id, data: [], fill: false, spanGaps: false};
        pair = {
          raw: Object.assign({warmupRole: 'raw', order: 1}, common),
          smooth: Object.assign({warmupRole: 'smooth', order: 0}, common),
        };
        chart.data.datasets.push(pair.raw, pair.smooth);
        entry.pairs.set(id, pair);
      }
      const colour = colourOf(id);
      const points = toPoints(s, origins);
      const radius = points.length === 1 ? 3 : 0;
      setData(pair.raw, points);
      setData(pair.smooth, smooth ? smoothPoints(points, curves.smoothing) : []);
      Object.assign(pair.raw, {
        borderColor: smooth ? fade(colour, 0.25) : colour,
        backgroundColor: colour,
        pointRadius: radius,
        hidden: curves.hidden.has(id),
      });
      Object.assign(pair.smooth, {
        borderColor: colour, backgroundColor: colour, pointRadius: radius,
        hidden: curves.hidden.has(id) || !smooth,
      });
    }
    chart.options.plugins.legend.display = entry.pairs.size > 1;
    chart.options.scales.x.title.text = xTitle();
    chart.options.scales.x.ticks.precision = curves.xAxis === 'step' ? 0 : undefined;
    // Chart.js spans a constant series over [v - 1, v + 1], which flattens small values like a learning rate.
    const [lo, hi] = extent(entry.series.map((s) => s.value));
    const pad = lo !== null && lo === hi ? Math.abs(lo) * 0.1 || 1 : undefined;
    const log = curves.logY && lo !== null && lo > 0 && lo !== hi;
    chart.options.scales.y.type = log ? 'logarithmic' : 'linear';
    chart.options.scales.y.min = log ? undefined : pad && lo - pad;
    chart.options.scales.y.max = log ? undefined : pad && hi + pad;
    entry.div.classList.toggle('log-y', log);
    chart.update('none');
    let held = 0;
    for (const pair of entry.pairs.values()) held += heldPoints(pair.raw);
    entry.div.dataset.renderedPoints = String(held);
    entry.div.dataset.datasets = String(entry.pairs.size);
  }

  function fillTable(entry) {
    const rows = entry.series.map((s) => {
      const [lo, hi] = extent([s.value]);
      const id = seriesId(s.run, s.stage);
      return el('tr', {'data-series': id, hidden: curves.hidden.has(id)},
        el('th', null, el('span', {class: 'swatch', style: `background:${colourOf(id)}`}),
          seriesLabel(s.run, s.stage)),
        el('td', {class: 'num'}, fmtNum(s.value[0])),
        el('td', {class: 'num'}, fmtNum(s.value[s.value.length - 1])),
        el('td', {class: 'num'}, fmtNum(lo)),
        el('td', {class: 'num'}, fmtNum(hi)),
        el('td', {class: 'num'}, String(s.step.length)));
    });
    entry.table.replaceChildren(
      el('thead', null, el('tr', null, ['series', 'first', 'last', 'min', 'max', 'points']
        .map((h, i) => el('th', {class: i ? 'num' : ''}, h)))),
      el('tbody', null, rows));
  }

  // Chart.js cannot lay out axes near the double range (it throws or never returns): such a key,
  // or one whose chart fails for any reason, is shown as a table instead, the rest of the page intact.
  const HUGE = 1e250;
  const tooLarge = (entry) => entry.series.some((s) => s.value.some((v) => v !== null && Math.abs(v) > HUGE));

  function asTable(entry, why) {
    if (entry.chart) {
      entry.chart.destroy();
      entry.chart = null;
      entry.pairs.clear();
      const canvas = entry.div.querySelector('.chart-canvas');
      if (canvas) canvas.remove();
      delete entry.div.dataset.renderedPoints;
    }
    if (!entry.table) {
      entry.table = el('table', {class: 'series-table'});
      entry.div.insertBefore(entry.table, entry.note);
    }
    entry.why = why;
  }

  function fillEntry(entry, origins) {
    const points = entry.series.reduce((n, s) => n + s.step.length, 0);
    const gaps = entry.series.reduce((n, s) => n + s.value.filter((v) => v === null).length, 0);
    entry.div.dataset.points = String(points);
    if (entry.chart && tooLarge(entry)) asTable(entry, `values beyond ±${HUGE}: shown as a table`);
    if (entry.chart) {
      try {
        fillChart(entry, origins);
      } catch (err) {
        asTable(entry, `the chart failed (${err.message}): shown as a table`);
      }
    }
    if (!entry.chart) fillTable(entry);
    const notes = [gaps ? `${gaps} points are NaN/inf (gaps)` : '', entry.why || ''].filter(Boolean);
    entry.note.textContent = notes.join('; ');
    entry.note.hidden = !notes.length;
  }

  function renderSingles(singles) {
    const box = curves.singles;
    box.replaceChildren();
    box.hidden = !singles.length;
    if (!singles.length) return;
    singles.sort((a, b) => compareKeys(a.key, b.key));
    box.append(el('h3', null, 'Single values'),
      el('table', {id: 'single-values'},
        el('thead', null, el('tr', null, el('th', null, 'stage'), el('th', null, 'key'),
          el('th', {class: 'num'}, 'step'), el('th', {class: 'num'}, 'value'))),
        el('tbody', null, singles.map((s) => el('tr', {'data-key': s.key, 'data-series': seriesId(s.run, s.stage)},
          el('td', null, seriesLabel(s.run, s.stage)),
          el('td', {class: 'mono'}, s.key),
          el('td', {class: 'num'}, String(s.step[0])),
          el('td', {class: 'num'}, s.value[0] === null ? (s.flag['0'] || 'null') : fmtNum(s.value[0])))))));
  }

  /** One checkbox per (run, stage) that has a series in some chart. */
  function renderToggles() {
    const ids = [];
    for (const s of data.series) {
      const id = seriesId(s.run, s.stage);
      const entry = curves.charts.get(s.key);
      if (entry && entry.series.includes(s) && !ids.some(([known]) => known === id)) {
        ids.push([id, seriesLabel(s.run, s.stage)]);
      }
    }
    curves.toggles.replaceChildren(...ids.map(([id, label]) =>
      el('label', {class: 'series-toggle'},
        el('input', {type: 'checkbox', 'data-series': id, checked: !curves.hidden.has(id),
          onchange: () => toggleSeries(id)}),
        el('span', {class: 'swatch', style: `background:${colourOf(id)}`}),
        label)));
  }

  function toggleSeries(id) {
    if (curves.hidden.has(id)) curves.hidden.delete(id);
    else curves.hidden.add(id);
    const shown = !curves.hidden.has(id);
    curves.toggles.querySelectorAll('input').forEach((box) => {
      if (box.dataset.series === id) box.checked = shown;
    });
    for (const entry of curves.charts.values()) {
      const pair = entry.pairs.get(id);
      if (pair && entry.chart) {
        pair.raw.hidden = !shown;
        pair.smooth.hidden = !shown || curves.smoothing === 0;
        entry.chart.update('none');
      }
      if (entry.table) {
        entry.table.querySelectorAll('tr[data-series]').forEach((tr) => {
          if (tr.dataset.series === id) tr.hidden = !shown;
        });
      }
    }
  }

  function applyKeyFilter() {
    const q = curves.filter.toLowerCase();
    let shown = 0;
    for (const entry of curves.charts.values()) {
      entry.div.hidden = !entry.key.toLowerCase().includes(q);
      if (!entry.div.hidden) shown += 1;
    }
    for (const group of curves.groups.values()) {
      const any = [...group.grid.children].some((c) => !c.hidden);
      group.section.hidden = !any;
    }
    curves.singles.querySelectorAll('tr[data-key]').forEach((tr) => {
      tr.hidden = !tr.dataset.key.toLowerCase().includes(q);
    });
    curves.count.textContent = `${shown} of ${curves.charts.size} charts`;
  }

  /** Create or update every chart (or table) from data.series; yields now and then so big reports stay responsive. */
  async function syncCurves() {
    const origins = stageOrigins();
    const singles = [];
    let built = 0;
    for (const [key, list] of seriesByKey()) {
      let entry = curves.charts.get(key);
      if (!entry && !list.some((s) => s.step.length >= 2)) {
        singles.push(...list);
        continue;
      }
      if (!entry) {
        entry = createEntry(key);
        built += 1;
        if (built % 6 === 0) await nextTask();
      }
      entry.series = list;
      fillEntry(entry, origins);
    }
    renderSingles(singles);
    renderToggles();
    applyKeyFilter();
  }

  /** Re-derive every chart's points after a smoothing or x-axis change. */
  const redrawCharts = debounce(() => {
    const origins = stageOrigins();
    for (const entry of curves.charts.values()) fillEntry(entry, origins);
  }, 120);

  function curveControls() {
    const value = el('output', {class: 'smoothing-value'}, '0.00');
    const controls = el('div', {class: 'curve-controls'});
    if (curves.useCharts) {
      controls.append(
        el('label', null, 'smoothing ',
          el('input', {type: 'range', id: 'smoothing', min: 0, max: 0.99, step: 0.01, value: 0,
            oninput: (e) => {
              curves.smoothing = Number(e.target.value);
              value.textContent = curves.smoothing.toFixed(2);
              redrawCharts();
            }}),
          value),
        el('label', null, 'x axis ',
          el('select', {id: 'x-axis', onchange: (e) => { curves.xAxis = e.target.value; redrawCharts(); }},
            el('option', {value: 'step'}, 'step'),
            el('option', {value: 'wall', title: "minutes since the stage's first point"}, 'wall time (min)'))),
        el('label', {title: 'log-scale y axis for metrics whose values are all positive'},
          el('input', {type: 'checkbox', id: 'log-y', onchange: (e) => { curves.logY = e.target.checked; redrawCharts(); }}),
          ' log y'));
    }
    controls.append(
      el('label', null, 'metric ',
        el('input', {type: 'search', id: 'metric-filter', placeholder: 'filter keys', size: 18,
          oninput: debounce((e) => { curves.filter = e.target.value; applyKeyFilter(); }, 150)})),
      curves.count);
    return el('div', {class: 'curve-bar'}, controls, curves.toggles);
  }

  async function renderCurves() {
    const root = $('#curves');
    root.replaceChildren(el('h2', null, 'Curves'));
    if (!data.series.some((s) => s.step.length)) {
      root.append(el('p', {class: 'empty', id: 'no-metrics'}, 'No metrics recorded'));
      return;
    }
    curves.useCharts = data.charts_library !== false && typeof Chart !== 'undefined';
    if (curves.useCharts) {
      Chart.Interaction.modes.warmupNearestX = nearestPerDataset;
      Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
      Chart.defaults.font.size = 11;
      Chart.defaults.color = '#4a5260';
    } else {
      root.append(el('p', {class: 'notice', id: 'charts-note'},
        data.charts_note || 'Chart.js is not available: curves are shown as tables'));
    }
    curves.toggles = el('div', {class: 'series-toggles', id: 'series-toggles'});
    curves.count = el('span', {class: 'chart-count', id: 'chart-count'});
    root.append(curveControls());
    for (const [id, title] of GROUPS) {
      const grid = el('div', {class: curves.useCharts ? 'chart-grid' : 'chart-grid tabular'});
      const section = el('section', {class: 'chart-group', 'data-group': id, hidden: true},
        el('h3', null, title), grid);
      curves.groups.set(id, {section, grid});
      root.append(section);
    }
    curves.singles = el('div', {class: 'singles card', id: 'single-values-box'});
    root.append(curves.singles);
    await syncCurves();
  }

  // ---------------------------------------------------------------- completion browser

  const FILTER_DEFAULTS = {stage: '', task: '', step: '', correct: '', rmin: '', rmax: '', finish: '',
    q: '', view: 'samples', page: '1'};
  const PAGE_SIZE = {samples: 50, groups: 10};
  const PROMPT_FOLD = 400;
  const COMPLETION_FOLD = 600;

  const browser = {filters: Object.assign({}, FILTER_DEFAULTS), controls: {}, promptsLower: []};

  /** Apply #samples&key=value... to the filters; false when the hash is about something else. */
  function readHash() {
    const hash = location.hash.slice(1);
    if (hash !== 'samples' && !hash.startsWith('samples&')) return false;
    const params = new URLSearchParams(hash.slice('samples&'.length));
    const filters = Object.assign({}, FILTER_DEFAULTS);
    for (const key of Object.keys(FILTER_DEFAULTS)) {
      if (params.has(key)) filters[key] = params.get(key);
    }
    if (!Object.hasOwn(PAGE_SIZE, filters.view)) filters.view = 'samples';
    browser.filters = filters;
    return true;
  }

  function writeHash() {
    const params = new URLSearchParams();
    for (const [key, value] of Object.entries(browser.filters)) {
      if (value !== FILTER_DEFAULTS[key]) params.set(key, value);
    }
    const query = params.toString();
    const hash = `#samples${query ? `&${query}` : ''}`;
    if (location.hash === hash) return;
    try {
      history.replaceState(null, '', hash);
    } catch (err) {
      location.replace(hash);   // some file:// contexts refuse replaceState
    }
  }

  const numberOrNull = (text) => (text.trim() !== '' && Number.isFinite(Number(text)) ? Number(text) : null);

  function matcher() {
    const f = browser.filters;
    const step = numberOrNull(f.step);
    const rmin = numberOrNull(f.rmin);
    const rmax = numberOrNull(f.rmax);
    const correct = f.correct === '' ? undefined : f.correct === 'null' ? null : Number(f.correct);
    const q = f.q.toLowerCase();
    return (r) => {
      // "run:stage", or a bare stage name (any run)
      if (f.stage && seriesId(r.run, r.stage) !== f.stage && !(f.stage.indexOf(':') < 0 && r.stage === f.stage)) return false;
      if (f.task && r.task !== f.task) return false;
      if (step !== null && r.step !== step) return false;
      if (correct !== undefined && (r.correct ?? null) !== correct) return false;
      if (rmin !== null && (r.reward === null || r.reward < rmin)) return false;
      if (rmax !== null && (r.reward === null || r.reward > rmax)) return false;
      if (f.finish && (r.finish_reason ?? 'none') !== f.finish) return false;
      if (q) {
        const prompts = browser.promptsLower;
        if (prompts[r.prompt] === undefined) prompts[r.prompt] = (data.samples.prompts[r.prompt] || '').toLowerCase();
        if (!prompts[r.prompt].includes(q)) {
          if (r.lower === undefined) Object.defineProperty(r, 'lower', {value: r.completion.toLowerCase()});
          if (!r.lower.includes(q)) return false;
        }
      }
      return true;
    };
  }

  const groupKey = (r) => `${r.run}\u0000${r.stage}\u0000${r.step}\u0000${r.example_id}`;

  function fold(text, limit, what) {
    const box = el('div', {class: `fold fold-${what}`});
    if (text.length <= limit * 1.2) {
      box.append(el('pre', {class: 'text'}, text));
      return box;
    }
    box.append(el('pre', {class: 'text head'}, text.slice(0, limit)),
      el('details', {class: 'rest'},
        el('summary', null, `show all (${text.length} chars)`),
        el('pre', {class: 'text'}, text.slice(limit))));
    return box;
  }

  function completionBlock(r) {
    const nodes = [fold(r.completion, COMPLETION_FOLD, 'completion')];
    if (r.chars > [...r.completion].length) {  // chars counts code points, as SQLite does
      nodes.push(el('p', {class: 'cut-note'},
        `cut at ${data.samples.max_chars} of ${r.chars} chars in this report (warmup runs export has all)`));
    }
    return nodes;
  }

  function correctChip(correct) {
    if (correct === 1) return el('span', {class: 'chip correct-1'}, 'correct');
    if (correct === 0) return el('span', {class: 'chip correct-0'}, 'incorrect');
    return el('span', {class: 'chip correct-null'}, 'ungraded');
  }

  function algorithmOf(r) {
    const run = data.runs.find((x) => x.id === r.run);
    const stage = run && run.stages.find((x) => x.name === r.stage);
    return stage ? stage.algorithm : '';
  }

  function scoreChips(r) {
    const parts = r.rewards && typeof r.rewards === 'object' && !Array.isArray(r.rewards) ?
      Object.entries(r.rewards) : [];
    return [
      correctChip(r.correct ?? null),
      el('span', {class: 'chip'}, `reward ${fmtNum(r.reward)}`),
      parts.length ? el('span', {class: 'chip parts'},
        parts.map(([name, v]) => `${name} ${fmtNum(v)}`).join(' · ')) : null,
      // An advantage only where the stage computes one (evaluate and sft store 0).
      r.advantage !== null && r.advantage !== undefined && (r.advantage !== 0 || algorithmOf(r) === 'grpo') ?
        el('span', {class: 'chip'}, `adv ${fmtNum(r.advantage)}`) : null,
      el('span', {class: `chip finish-${r.finish_reason ?? 'none'}`}, `finish ${r.finish_reason ?? 'none'}`),
      el('span', {class: 'chip'}, `${r.completion_tokens ?? '?'} tokens`),
    ];
  }

  function sampleCard(r) {
    return el('div', {class: 'sample card', 'data-id': r.id, 'data-run': r.run, 'data-stage': r.stage,
      'data-step': r.step},
    el('div', {class: 'sample-meta'},
      el('span', {class: 'where'}, `${seriesLabel(r.run, r.stage)} · step ${r.step} · ${r.task} · ${r.example_id}`),
      el('span', {class: 'sample-id'}, `#${r.id}`)),
    el('div', {class: 'chips'}, scoreChips(r)),
    el('div', {class: 'label'}, 'prompt'),
    fold(data.samples.prompts[r.prompt] || '', PROMPT_FOLD, 'prompt'),
    el('div', {class: 'label'}, 'completion'),
    completionBlock(r));
  }

  function groupCard(rows) {
    const first = rows[0];
    const rewards = rows.map((r) => r.reward).filter((v) => v !== null);
    const graded = rows.filter((r) => r.correct !== null && r.correct !== undefined);
    const summary = [`${rows.length} completion${rows.length === 1 ? '' : 's'}`];
    if (rewards.length) summary.push(`mean reward ${fmtNum(rewards.reduce((a, b) => a + b, 0) / rewards.length)}`);
    if (graded.length) summary.push(`${graded.filter((r) => r.correct === 1).length}/${graded.length} correct`);
    return el('div', {class: 'group card', 'data-run': first.run, 'data-stage': first.stage, 'data-step': first.step,
      'data-example': first.example_id},
    el('div', {class: 'sample-meta'},
      el('span', {class: 'where'},
        `${seriesLabel(first.run, first.stage)} · step ${first.step} · ${first.task} · ${first.example_id}`),
      el('span', {class: 'group-summary'}, summary.join(' · '))),
    el('div', {class: 'label'}, 'prompt'),
    fold(data.samples.prompts[first.prompt] || '', PROMPT_FOLD, 'prompt'),
    el('div', {class: 'group-row'}, rows.map((r) =>
      el('div', {class: 'completion-card', 'data-id': r.id},
        el('div', {class: 'chips'}, scoreChips(r)),
        completionBlock(r)))));
  }

  function pager() {
    const prev = el('button', {type: 'button', class: 'prev', onclick: () => turnPage(-1)}, '‹ prev');
    const next = el('button', {type: 'button', class: 'next', onclick: () => turnPage(1)}, 'next ›');
    const label = el('span', {class: 'page-label'});
    browser.pagers.push({prev, next, label});
    return el('div', {class: 'pager'}, prev, label, next);
  }

  function turnPage(delta) {
    browser.filters.page = String(Number(browser.filters.page) + delta);
    writeHash();
    renderSampleList();
    $('#samples').scrollIntoView();
  }

  function renderSampleList() {
    const f = browser.filters;
    const test = matcher();
    const rows = data.samples.rows.filter(test);
    const groups = new Map();
    for (const r of rows) {
      const key = groupKey(r);
      if (!groups.has(key)) groups.set(key, []);
      groups.get(key).push(r);
    }
    $('#sample-count').textContent = String(rows.length);
    $('#group-count').textContent = String(groups.size);
    const items = f.view === 'groups' ? [...groups.values()] : rows;
    const size = PAGE_SIZE[f.view];
    const pages = Math.max(1, Math.ceil(items.length / size));
    const page = Math.min(pages, Math.max(1, Math.floor(Number(f.page)) || 1));
    f.page = String(page);
    const shown = items.slice((page - 1) * size, page * size);
    const list = $('#sample-list');
    list.className = `sample-list view-${f.view}`;
    list.replaceChildren(...shown.map((item) => (f.view === 'groups' ? groupCard(item) : sampleCard(item))));
    if (!shown.length) list.append(el('p', {class: 'empty'}, 'No completion matches these filters.'));
    for (const {prev, next, label} of browser.pagers) {
      prev.disabled = page <= 1;
      next.disabled = page >= pages;
      label.textContent = `page ${page} of ${pages}`;
    }
  }

  /** Put browser.filters into the form controls. */
  function syncControls() {
    for (const [key, control] of Object.entries(browser.controls)) control.value = browser.filters[key];
  }

  function onFilterChange(key, value) {
    browser.filters[key] = value;
    browser.filters.page = '1';
    writeHash();
    renderSampleList();
  }

  function select(key, label, options) {
    const control = el('select', {id: `f-${key}`, name: key},
      options.map(([value, text]) => el('option', {value}, text)));
    control.addEventListener('change', () => onFilterChange(key, control.value));
    browser.controls[key] = control;
    return el('label', null, label, control);
  }

  function input(key, label, attrs) {
    const control = el('input', Object.assign({id: `f-${key}`, name: key}, attrs));
    control.addEventListener('input', debounce(() => onFilterChange(key, control.value), 200));
    browser.controls[key] = control;
    return el('label', null, label, control);
  }

  function renderSamples() {
    const root = $('#samples');
    root.replaceChildren(el('h2', null, 'Completions'));
    const samples = data.samples;
    if (samples && samples.note) root.append(el('p', {class: 'notice', id: 'samples-note'}, samples.note));
    if (!samples || !samples.rows || !samples.rows.length) {
      root.append(el('p', {class: 'empty', id: 'no-samples'}, 'No completions recorded'));
      return;
    }
    const uniq = (values) => [...new Set(values)];
    const stages = uniq(samples.rows.map((r) => seriesId(r.run, r.stage)));
    const labelOf = new Map(samples.rows.map((r) => [seriesId(r.run, r.stage), seriesLabel(r.run, r.stage)]));
    const tasks = uniq(samples.rows.map((r) => r.task)).sort();
    const finishes = uniq(samples.rows.map((r) => r.finish_reason ?? 'none')).sort();
    const form = el('form', {class: 'sample-filters', onsubmit: (e) => e.preventDefault()},
      select('stage', 'run / stage', [['', 'all'], ...stages.map((id) => [id, labelOf.get(id)])]),
      select('task', 'task', [['', 'all'], ...tasks.map((t) => [t, t])]),
      input('step', 'step', {type: 'number', min: 0, step: 1, placeholder: 'all', class: 'narrow'}),
      select('correct', 'correct', [['', 'all'], ['1', 'correct (1)'], ['0', 'incorrect (0)'],
        ['null', 'ungraded (null)']]),
      input('rmin', 'reward min', {type: 'number', step: 'any', class: 'narrow'}),
      input('rmax', 'reward max', {type: 'number', step: 'any', class: 'narrow'}),
      select('finish', 'finish reason', [['', 'all'], ...finishes.map((v) => [v, v])]),
      input('q', 'search', {type: 'search', placeholder: 'text in prompt or completion'}),
      select('view', 'view', [['samples', 'samples'], ['groups', 'groups (GRPO)']]));
    browser.pagers = [];
    const status = el('div', {class: 'sample-status'},
      el('span', null, el('span', {id: 'sample-count'}, '0'), ' samples in ',
        el('span', {id: 'group-count'}, '0'), ' group(s)',
        el('span', {class: 'muted'},
          ` (${samples.included} of ${samples.total} in the store are in this report)`)),
      pager());
    root.append(form, status, el('div', {id: 'sample-list', class: 'sample-list'}), pager());
    syncControls();
    renderSampleList();
    if (!browser.listening) {  // once, though live mode redraws the browser
      browser.listening = true;
      window.addEventListener('hashchange', () => {
        if (!readHash()) return;
        syncControls();
        renderSampleList();
      });
    }
  }

  // ---------------------------------------------------------------- live mode

  function startLive() {
    const status = $('#live-status');
    const every = Math.max(1, Number(data.refresh_s) || 5) * 1000;
    status.hidden = false;
    status.textContent = `live · every ${every / 1000} s`;
    const poll = async () => {
      try {
        const response = await fetch(data.api, {cache: 'no-store'});
        if (!response.ok) throw new Error(`HTTP ${response.status}`);
        const next = await response.json();
        Object.assign(data, {runs: next.runs, series: next.series, table: next.table,
          generated_at: next.generated_at});
        // New completions in the store: fetch them with the samples and redraw the browser.
        const have = data.samples ? data.samples.total : 0;
        if (next.samples_total !== undefined && next.samples_total !== have) {
          const full = await fetch(data.api.replace('samples=0', 'samples=1'), {cache: 'no-store'});
          if (!full.ok) throw new Error(`HTTP ${full.status}`);
          data.samples = (await full.json()).samples;
          browser.promptsLower = [];
          renderSamples();
        }
        renderHeader();
        renderRuns();
        renderTable();
        await syncCurves();
        status.className = 'live-status';
        status.textContent = `live · updated ${clock()}`;
      } catch (err) {
        status.className = 'live-status warn';
        status.textContent = `live · update failed at ${clock()} (${err.message}); retrying every ${every / 1000} s`;
      }
      setTimeout(poll, every);
    };
    setTimeout(poll, every);
  }

  // ---------------------------------------------------------------- main

  async function main() {
    renderHeader();
    renderRuns();
    if (!data.runs.length) {
      ['#results', '#curves', '#samples'].forEach((id) => { $(id).hidden = true; });
    } else {
      const fromLink = readHash();
      renderTable();
      renderSamples();
      await renderCurves();
      if (fromLink) $('#samples').scrollIntoView();
    }
    document.body.dataset.ready = '1';
    if (data.live && data.api) startLive();
  }

  main();
})();

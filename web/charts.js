// The live charts (uPlot, from dist/web/vendor): one point per stats-stream sample, the last
// five minutes.
import uPlot from './vendor/uPlot.esm.js';

const POINTS = 300;

const CHARTS = [
  {
    id: 'chart-connections',
    series: [
      {
        label: 'connections',
        stroke: '#4f9dff',
        fill: 'rgba(79,157,255,0.12)',
        pick: (s) => s.stats.connections,
      },
      { label: 'users', stroke: '#35c99a', pick: (s) => s.stats.users },
    ],
  },
  {
    id: 'chart-messages',
    unit: '/s',
    series: [
      { label: 'in /s', stroke: '#b28cff', pick: (s) => s.rates.messagesIn },
      { label: 'out /s', stroke: '#ffb454', pick: (s) => s.rates.messagesOut },
    ],
  },
  {
    id: 'chart-problems',
    unit: '/s',
    series: [
      { label: 'pushes dropped /s', stroke: '#ff6b6b', pick: (s) => s.rates.pushesDropped },
      { label: 'qos1 redelivered /s', stroke: '#f5d547', pick: (s) => s.rates.redelivered },
    ],
  },
  {
    id: 'chart-lag',
    unit: ' ms',
    series: [
      { label: 'event-loop lag p99 (ms)', stroke: '#ff8fcf', pick: (s) => s.lag.p99 },
      { label: 'max (ms)', stroke: '#8a93a6', dash: [4, 4], pick: (s) => s.lag.max },
    ],
  },
];

const AXIS = {
  stroke: '#8b95a7',
  grid: { stroke: '#262d3b', width: 1 },
  ticks: { stroke: '#262d3b', width: 1 },
};

const time = (t) => new Date(t * 1000).toLocaleTimeString('en-GB', { hour12: false });

function options(chart, width) {
  const fmt = (v) => (v == null ? '–' : `${Math.round(v * 100) / 100}${chart.unit ?? ''}`);
  // The legend shows the values under the cursor, and the latest ones when the cursor is away.
  const latest = (u, v, i, idx) => (idx == null ? u.data[i]?.at(-1) : v);
  return {
    width,
    height: 170,
    cursor: { drag: { x: false, y: false } },
    legend: { live: true },
    scales: { x: { time: true }, y: { range: (_u, _min, max) => [0, max > 0 ? max * 1.15 : 1] } },
    axes: [
      {
        ...AXIS,
        // Whole seconds only: the labels show seconds, so a finer step would repeat them.
        incrs: [1, 2, 5, 10, 15, 30, 60, 120, 300, 600],
        values: (_u, ticks) => {
          const labels = ticks.map(time);
          // For tests and for the curious: the labels drawn on the time axis.
          const box = document.getElementById(chart.id);
          if (box) box.dataset.ticks = labels.join('|');
          return labels;
        },
      },
      { ...AXIS, size: 56, values: (_u, ticks) => ticks.map((t) => `${t}`) },
    ],
    series: [
      {
        label: 'time',
        value: (u, v, i, idx) => (latest(u, v, i, idx) == null ? '–' : time(latest(u, v, i, idx))),
      },
      ...chart.series.map((s) => ({
        label: s.label,
        stroke: s.stroke,
        fill: s.fill,
        width: 2,
        dash: s.dash,
        points: { show: false },
        value: (u, v, i, idx) => fmt(latest(u, v, i, idx)),
      })),
    ],
  };
}

/** Creates the charts in their containers; returns `push(sample)` and `reset()`. */
export function createCharts() {
  const made = CHARTS.map((chart) => {
    const box = document.getElementById(chart.id);
    const data = [[], ...chart.series.map(() => [])];
    const plot = new uPlot(options(chart, Math.max(240, box.clientWidth)), data, box);
    new ResizeObserver(() => {
      const w = Math.max(240, box.clientWidth);
      if (w !== plot.width) plot.setSize({ width: w, height: 170 });
    }).observe(box);
    return { chart, box, data, plot };
  });
  return {
    push(sample) {
      for (const m of made) {
        m.data[0].push(sample.t / 1000);
        m.chart.series.forEach((s, i) => {
          m.data[i + 1].push(s.pick(sample) ?? null);
        });
        if (m.data[0].length > POINTS) for (const d of m.data) d.shift();
        m.plot.setData(m.data);
        // For tests and for the curious: the last value of each series.
        m.box.dataset.last = JSON.stringify(m.data.slice(1).map((d) => d.at(-1)));
        m.box.dataset.points = String(m.data[0].length);
      }
    },
    /** Replace what is drawn with `samples` (the server's history), drawn once. */
    seed(samples) {
      for (const m of made) {
        for (const d of m.data) d.length = 0;
        for (const sample of samples.slice(-POINTS)) {
          m.data[0].push(sample.t / 1000);
          m.chart.series.forEach((s, i) => {
            m.data[i + 1].push(s.pick(sample) ?? null);
          });
        }
        m.plot.setData(m.data);
      }
    },
    reset() {
      for (const m of made) {
        for (const d of m.data) d.length = 0;
        m.plot.setData(m.data);
      }
    },
  };
}

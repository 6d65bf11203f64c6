/**
 * A readable text summary of the kernel metrics an OtlpReceiver got: what the demo prints at the end.
 */
import { ATTRS, METRICS } from '../semconv';
import type { AttrValue, Attributes, ReceivedPoint } from './receiver';

// ---------------------------------------------------------------------------------------------------------------
// Series arithmetic

/** Identity of a series: resource, metric and point attributes. */
function seriesKey(p: ReceivedPoint): string {
  const sorted = (a: Attributes): [string, AttrValue][] => Object.entries(a).sort(([x], [y]) => (x < y ? -1 : 1));
  return JSON.stringify([p.name, sorted(p.resource), p.scope, sorted(p.attributes)]);
}

/**
 * Reduces each series to one point: the latest one for cumulative sums, gauges and cumulative histograms; for delta
 * series, the sum of all (values, counts and buckets added up). Returned points keep their series' attributes.
 */
function reduceSeries(points: ReceivedPoint[]): ReceivedPoint[] {
  const bySeries = new Map<string, ReceivedPoint>();
  for (const p of points) {
    const key = seriesKey(p);
    const prev = bySeries.get(key);
    if (!prev) bySeries.set(key, p);
    else if (p.temporality === 'delta') bySeries.set(key, addPoints(prev, p));
    else if (p.timeUnixNano >= prev.timeUnixNano) bySeries.set(key, p);
  }
  return [...bySeries.values()];
}

function addArrays(a: number[] | undefined, b: number[] | undefined): number[] | undefined {
  if (!a || !b) return a ?? b;
  const out = a.slice();
  b.forEach((v, i) => (out[i] = (out[i] ?? 0) + v));
  return out;
}

function addOptional(a: number | undefined, b: number | undefined, f: (x: number, y: number) => number) {
  return a === undefined ? b : b === undefined ? a : f(a, b);
}

/** The sum of two points of the same series or of series with the same buckets. */
function addPoints(a: ReceivedPoint, b: ReceivedPoint): ReceivedPoint {
  const out: ReceivedPoint = { ...a, timeUnixNano: a.timeUnixNano > b.timeUnixNano ? a.timeUnixNano : b.timeUnixNano };
  out.value = addOptional(a.value, b.value, (x, y) => x + y);
  out.count = addOptional(a.count, b.count, (x, y) => x + y);
  out.sum = addOptional(a.sum, b.sum, (x, y) => x + y);
  out.min = addOptional(a.min, b.min, Math.min);
  out.max = addOptional(a.max, b.max, Math.max);
  out.bucketCounts = addArrays(a.bucketCounts, b.bucketCounts);
  out.zeroCount = addOptional(a.zeroCount, b.zeroCount, (x, y) => x + y);
  if (a.type === 'exponentialHistogram') {
    const scale = Math.min(a.scale ?? 0, b.scale ?? 0);
    out.scale = scale;
    out.positive = addExpBuckets(a, b, scale, 'positive');
    out.negative = addExpBuckets(a, b, scale, 'negative');
  }
  return out;
}

function addExpBuckets(a: ReceivedPoint, b: ReceivedPoint, scale: number, side: 'positive' | 'negative') {
  const counts = new Map<number, number>();
  for (const p of [a, b]) {
    const buckets = p[side];
    if (!buckets) continue;
    const shift = (p.scale ?? 0) - scale;
    buckets.bucketCounts.forEach((c, i) => {
      const index = (buckets.offset + i) >> shift;
      counts.set(index, (counts.get(index) ?? 0) + c);
    });
  }
  if (counts.size === 0) return { offset: 0, bucketCounts: [] };
  const offset = Math.min(...counts.keys());
  const bucketCounts = new Array<number>(Math.max(...counts.keys()) - offset + 1).fill(0);
  for (const [index, c] of counts) bucketCounts[index - offset] = c;
  return { offset, bucketCounts };
}

/** Totals of a sum/gauge metric grouped by the given attributes. */
function totalsBy(points: ReceivedPoint[], name: string, keys: string[]): { key: string[]; value: number }[] {
  const groups = new Map<string, { key: string[]; value: number }>();
  for (const p of reduceSeries(points.filter((x) => x.name === name))) {
    const key = keys.map((k) => attr(p.attributes, k));
    const id = JSON.stringify(key);
    const g = groups.get(id) ?? { key, value: 0 };
    g.value += p.value ?? 0;
    groups.set(id, g);
  }
  return [...groups.values()].sort((x, y) => compareKeys(x.key, y.key));
}

function attr(a: Attributes, k: string): string {
  const v = a[k];
  return v === undefined || v === null ? '' : String(v);
}

function compareKeys(a: string[], b: string[]): number {
  for (let i = 0; i < a.length; i++) {
    if (a[i] !== b[i]) return a[i] < b[i] ? -1 : 1;
  }
  return 0;
}

// ---------------------------------------------------------------------------------------------------------------
// Histogram estimates

interface Bucket {
  upper: number;
  count: number;
}

function buckets(p: ReceivedPoint): Bucket[] {
  if (p.type === 'histogram') {
    const bounds = p.explicitBounds ?? [];
    return (p.bucketCounts ?? []).map((count, i) => ({ upper: i < bounds.length ? bounds[i] : Infinity, count }));
  }
  // Exponential: bucket index i holds (base^i, base^(i+1)], base = 2^(2^-scale). Negative values are left out.
  const base = 2 ** (2 ** -(p.scale ?? 0));
  const out: Bucket[] = [{ upper: 0, count: p.zeroCount ?? 0 }];
  const pos = p.positive ?? { offset: 0, bucketCounts: [] };
  pos.bucketCounts.forEach((count, i) => out.push({ upper: base ** (pos.offset + i + 1), count }));
  return out;
}

/** The upper bound of the bucket holding quantile q (Infinity: the overflow bucket). */
function quantileBound(bs: Bucket[], total: number, q: number): number | undefined {
  if (total <= 0) return undefined;
  const rank = q * total;
  let seen = 0;
  for (const b of bs) {
    seen += b.count;
    if (seen >= rank && b.count > 0) return b.upper;
  }
  return bs.length ? bs[bs.length - 1].upper : undefined;
}

// ---------------------------------------------------------------------------------------------------------------
// Formatting

function table(header: string[], rows: string[][], rightAligned: number[] = []): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]): string =>
    '  ' +
    cells
      .map((c, i) => (rightAligned.includes(i) ? c.padStart(widths[i]) : c.padEnd(widths[i])))
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)];
}

function integer(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

function bytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${integer(n)} B` : `${integer(n)} B (${v.toFixed(1)} ${units[u]})`;
}

function seconds(s: number): string {
  if (!Number.isFinite(s)) return String(s);
  const a = Math.abs(s);
  if (a === 0) return '0';
  if (a < 1e-3) return `${(s * 1e6).toFixed(a < 1e-5 ? 2 : 1)} µs`;
  if (a < 1) return `${(s * 1e3).toFixed(a < 1e-2 ? 2 : 1)} ms`;
  return `${s.toFixed(2)} s`;
}

function inUnit(v: number, unit: string): string {
  if (unit === 's') return seconds(v);
  if (unit === 'ms') return seconds(v / 1e3);
  if (unit === 'By') return bytes(v);
  return Number.isInteger(v) ? integer(v) : v.toPrecision(4);
}

function bound(v: number | undefined, unit: string, max: number | undefined): string {
  if (v === undefined) return '-';
  if (v === Infinity) return max !== undefined ? `≤ ${inUnit(max, unit)}` : '> last bound';
  return `≤ ${inUnit(v, unit)}`;
}

function server(address: string, port: string): string {
  if (!address && !port) return '-';
  const host = address.includes(':') ? `[${address}]` : address;
  return address ? `${host}:${port || '?'}` : `:${port}`;
}

// ---------------------------------------------------------------------------------------------------------------

const HISTOGRAMS = [METRICS.TCP_CONNECT_DURATION, METRICS.TCP_CONNECTION_DURATION, METRICS.TCP_RTT] as string[];
const KNOWN = new Set<string>(Object.values(METRICS));

/** A compact, aligned text summary of the kernel and self-telemetry metrics among the points. */
export function summarize(points: ReceivedPoint[]): string {
  const out: string[] = [];
  const names = new Set(points.map((p) => p.name));

  // Where the data came from.
  const services = [...new Set(points.map((p) => attr(p.resource, 'service.name')).filter(Boolean))];
  const protocols = [...new Set(points.map((p) => p.protocol))];
  const plural = (n: number, word: string): string => `${integer(n)} ${word}${n === 1 ? '' : 's'}`;
  out.push(
    `${plural(points.length, 'data point')}, ${plural(names.size, 'metric')}` +
      (services.length ? `, service.name=${services.join(', ')}` : '') +
      (protocols.length ? `, over ${protocols.join(', ')}` : ''),
  );

  // Bytes per connection side, server and direction.
  const endpoint = [ATTRS.SERVER_ADDRESS, ATTRS.SERVER_PORT];
  out.push('', `${METRICS.PROCESS_NETWORK_IO} (bytes the process's TCP sockets moved, counted in the kernel)`);
  const io = totalsBy(points, METRICS.PROCESS_NETWORK_IO, [
    ATTRS.TCP_CONNECTION_SIDE,
    ...endpoint,
    ATTRS.NETWORK_IO_DIRECTION,
  ]);
  if (!io.length) out.push('  (none received)');
  else {
    out.push(
      ...table(
        ['side', 'server', 'direction', 'bytes'],
        io.map(({ key: [side, address, port, direction], value }) => [
          side || '-',
          server(address, port),
          direction || '-',
          bytes(value),
        ]),
        [3],
      ),
    );
  }

  // Connections, failures, retransmits and resets.
  const opened = totalsBy(points, METRICS.TCP_CONNECTION_OPENED, [ATTRS.TCP_CONNECTION_SIDE, ...endpoint]);
  const failed = totalsBy(points, METRICS.TCP_CONNECTION_FAILED, [
    ATTRS.TCP_CONNECTION_SIDE,
    ...endpoint,
    ATTRS.ERROR_TYPE,
  ]);
  out.push('', 'TCP connections');
  if (!opened.length && !failed.length) out.push('  (none received)');
  else {
    const rows = [
      ...opened.map(({ key: [side, address, port], value }) => [
        'opened',
        side || '-',
        server(address, port),
        '',
        integer(value),
      ]),
      ...failed.map(({ key: [side, address, port, error], value }) => [
        'failed',
        side || 'client',
        server(address, port),
        error || '-',
        integer(value),
      ]),
    ];
    out.push(...table(['', 'side', 'server', 'error.type', 'count'], rows, [4]));
  }

  const retrans = totalsBy(points, METRICS.TCP_RETRANSMITS, [ATTRS.TCP_CONNECTION_SIDE]);
  const resets = totalsBy(points, METRICS.TCP_RESETS, [ATTRS.TCP_RESET_DIRECTION]);
  const sumOf = (gs: { value: number }[]): number => gs.reduce((s, g) => s + g.value, 0);
  if (names.has(METRICS.TCP_RETRANSMITS) || names.has(METRICS.TCP_RESETS)) {
    const parts: string[] = [];
    if (names.has(METRICS.TCP_RETRANSMITS)) parts.push(`retransmitted segments ${integer(sumOf(retrans))}`);
    if (names.has(METRICS.TCP_RESETS)) {
      const detail = resets.map((g) => `${g.key[0] || '?'} ${integer(g.value)}`).join(', ');
      parts.push(`resets ${integer(sumOf(resets))}${detail ? ` (${detail})` : ''}`);
    }
    out.push(`  ${parts.join('; ')}`);
  }

  // Histograms: ours first, then any other the points hold.
  const histNames = [
    ...HISTOGRAMS.filter((n) => names.has(n)),
    ...[...names]
      .filter((n) => !HISTOGRAMS.includes(n))
      .filter((n) => points.some((p) => p.name === n && (p.type === 'histogram' || p.type === 'exponentialHistogram')))
      .sort(),
  ];
  if (histNames.length) {
    out.push('', 'Distributions (p50/p99: upper bound of the bucket holding the quantile)');
    const rows = histNames.map((name) => {
      const series = reduceSeries(points.filter((p) => p.name === name));
      const unit = series[0].unit;
      // Series with the same bucket layout add up; a layout other than the first one's is left out.
      const first = series[0];
      const same = series.filter(
        (p) =>
          p.type === first.type &&
          (p.type === 'exponentialHistogram' ||
            JSON.stringify(p.explicitBounds ?? []) === JSON.stringify(first.explicitBounds ?? [])),
      );
      const total = same.slice(1).reduce(addPoints, { ...first, temporality: 'delta' });
      const count = total.count ?? 0;
      const bs = buckets(total);
      return [
        name,
        integer(count),
        count && total.sum !== undefined ? inUnit(total.sum / count, unit) : '-',
        bound(quantileBound(bs, count, 0.5), unit, total.max),
        bound(quantileBound(bs, count, 0.99), unit, total.max),
        total.max !== undefined ? inUnit(total.max, unit) : '-',
      ];
    });
    // max is optional in OTLP: its column only when some metric has it.
    const withMax = rows.some((r) => r[5] !== '-');
    const header = ['metric', 'count', 'mean', 'p50', 'p99', 'max'];
    out.push(
      ...table(withMax ? header : header.slice(0, 5), withMax ? rows : rows.map((r) => r.slice(0, 5)), [1, 2, 3, 4, 5]),
    );
  }

  // Self-telemetry: probes, their hooks and their kernel cost.
  const attached = reduceSeries(points.filter((p) => p.name === METRICS.SELF_PROBE_ATTACHED));
  if (attached.length) {
    const kernel = totalsBy(points, METRICS.SELF_PROBE_KERNEL_TIME, [ATTRS.SELF_PROBE]);
    const runs = totalsBy(points, METRICS.SELF_PROBE_RUNS, [ATTRS.SELF_PROBE]);
    const find = (gs: { key: string[]; value: number }[], probe: string): number | undefined =>
      gs.find((g) => g.key[0] === probe)?.value;
    out.push('', 'SDK self-telemetry (probes)');
    const rows = attached
      .map((p) => {
        const probe = attr(p.attributes, ATTRS.SELF_PROBE);
        const k = find(kernel, probe);
        const r = find(runs, probe);
        return [
          probe || '-',
          attr(p.attributes, ATTRS.SELF_HOOK) || '-',
          p.value ? 'yes' : 'no',
          r !== undefined ? integer(r) : '-',
          k !== undefined ? seconds(k) : '-',
        ];
      })
      .sort(compareKeys);
    out.push(...table(['probe', 'hook', 'attached', 'runs', 'kernel time'], rows, [3, 4]));
    const dropped = totalsBy(points, METRICS.SELF_DROPPED, [ATTRS.SELF_DROP_REASON]);
    if (dropped.length) {
      out.push(`  dropped events: ${dropped.map((g) => `${g.key[0] || '?'} ${integer(g.value)}`).join(', ')}`);
    }
  }

  const others = [...names].filter((n) => !KNOWN.has(n) && !histNames.includes(n)).sort();
  if (others.length) out.push('', `Other metrics: ${others.join(', ')}`);
  return out.join('\n');
}

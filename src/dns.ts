/**
 * The DNS collector: bpf/dns.bpf.c's completed lookups (a ring buffer) as `dns.lookup.duration`, aggregated here
 * by name and error. Names are bounded: the first `dnsMaxNames` distinct names keep their own series, later ones
 * go to `_OTHER`.
 */
import * as path from 'path';
import { getSystemErrorName } from 'util';
import type { Attributes } from '@opentelemetry/api';
import type { Capabilities } from './capabilities';
import type { Collector, KernelMetric, KernelPoint } from './collector';
import type { ResolvedConfig } from './config';
import { decodeDnsEvent, decodeDnsHealth, DnsEvent, DnsHealth, Log2Histogram } from './bpf-layout';
import type { UprobeHits } from './budget';
import { UprobeCollectorBase } from './uprobe-collector';
import { EventLog } from './eventlog';
import { emptyHist, recordNs } from './histogram';
import { BPF_OBJECT_DIR, NativeAddon, NativeObject } from './native';
import { disabledReason, Measurement, ProbeSet } from './probes';
import { ATTRS, METRICS, VALUES } from './semconv';
import { declareSymbols, resolveSymbols } from './symbols';
import { setTarget } from './target';

export const DNS_OBJECT = path.join(BPF_OBJECT_DIR, 'dns.bpf.o');

const LOOKUP_SYMBOL = 'uv_getaddrinfo';
const DONE_SYMBOL = 'uv__getaddrinfo_done';
declareSymbols([LOOKUP_SYMBOL, DONE_SYMBOL]);

/** Uprobes on the running node binary: symbols differ between versions, so each is resolved from it at start. */
export function dnsMeasurements(binary: string = process.execPath): Measurement[] {
  const symbols = resolveSymbols(binary, [LOOKUP_SYMBOL, DONE_SYMBOL]);
  return [
    {
      name: 'dns.lookup',
      description: 'dns.lookup() and connects by host name: libuv uv_getaddrinfo to uv__getaddrinfo_done (2 uprobe hits per lookup)',
      variants: [
        {
          hook: 'uprobe',
          programs: ['dns_lookup', 'dns_done'],
          uprobes: [
            { program: 'dns_lookup', binary, symbol: LOOKUP_SYMBOL, resolved: symbols.get(LOOKUP_SYMBOL) ?? null },
            { program: 'dns_done', binary, symbol: DONE_SYMBOL, resolved: symbols.get(DONE_SYMBOL) ?? null },
          ],
        },
      ],
    },
  ];
}

/** libuv's UV_EAI_NODATA and UV_EAI_NONAME: Node reports both as ENOTFOUND (lib/internal/errors.js). */
const EAI_NOT_FOUND = new Set([-3007, -3008]);

/** `error.type` of a failed lookup, as Node's err.code: ENOTFOUND, EAI_AGAIN, EAI_FAIL, ... */
export function dnsErrorType(status: number): string {
  if (EAI_NOT_FOUND.has(status)) return 'ENOTFOUND';
  try {
    return getSystemErrorName(status);
  } catch {
    return `uv_${status}`;
  }
}

export class DnsCollector extends UprobeCollectorBase implements Collector {
  readonly name = 'dns';
  /** name -> error.type ('' for success) -> durations. */
  private readonly series = new Map<string, Map<string, Log2Histogram>>();
  private lookups = 0;
  /** The last completed lookups, numbered (src/spans.ts takes the one a connection's own lookup produced). */
  readonly recent = new EventLog<DnsEvent>();
  /** Called for each completed lookup, for tests and whoever needs single lookups. */
  onLookup?: (e: DnsEvent) => void;

  constructor(
    private readonly addon: NativeAddon,
    private readonly config: ResolvedConfig,
    private readonly caps: Capabilities,
    private readonly objectPath: string = DNS_OBJECT,
    binary: string = process.execPath,
  ) {
    super();
    this.measurements = dnsMeasurements(binary);
  }

  private readonly configure = (obj: NativeObject): void => setTarget(obj, this.caps);

  private readonly measurements: Measurement[];

  createProbeSet(): ProbeSet {
    return new ProbeSet(this.addon, this.objectPath, this.measurements, this.configure, this.caps);
  }

  start(): void {
    const probes = this.createProbeSet();
    this.probes = probes;
    try {
      this.ring = probes.baseObject().ringBuffer('dns_events', records => {
        if (!this.detachedCounts.has('dns.lookup')) for (const r of records) this.record(decodeDnsEvent(r));
      });
      probes.attach(this.config.attachMode, name => disabledReason(this.config, name));
    } catch (err) {
      this.stop();
      throw err;
    }
  }

  private record(e: DnsEvent): void {
    this.lookups++;
    let name = e.name;
    if (!this.series.has(name) && this.series.size >= this.config.dnsMaxNames) name = VALUES.OTHER;
    let byError = this.series.get(name);
    if (!byError) this.series.set(name, (byError = new Map()));
    const error = e.status === 0 ? '' : dnsErrorType(e.status);
    let h = byError.get(error);
    if (!h) byError.set(error, (h = emptyHist()));
    recordNs(h, e.durationNs);
    this.recent.push(e);
    this.onLookup?.(e);
  }

  health(): DnsHealth | undefined {
    const v = this.probes?.bss();
    return v ? decodeDnsHealth(v) : undefined;
  }

  dropped(): [string, number][] {
    const h = this.health();
    return h ? [
      ['dns_ring_buffer_full', h.eventsDropped],
      ['dns_unmatched', h.unmatched],
    ] : [];
  }

  /** Lookups seen so far (completed, from the ring buffer). */
  lookupCount(): number {
    this.ring?.consume();
    return this.lookups;
  }

  /** The completed lookups, after taking what the ring buffer holds now. */
  lookupLog(): EventLog<DnsEvent> {
    this.ring?.consume();
    return this.recent;
  }

  protected countedHits(): Map<string, UprobeHits[]> {
    const h = this.health();
    if (!h) return new Map();
    const [lookup, done] = this.measurements[0].variants[0].uprobes!;
    return new Map([
      [
        'dns.lookup',
        [
          { hits: h.lookupHits, emulated: lookup.resolved?.emulated ?? false },
          { hits: h.doneHits, emulated: done.resolved?.emulated ?? false },
        ],
      ],
    ]);
  }

  collect(): KernelMetric[] {
    if (!this.probes) return [];
    this.ring?.consume();
    const points: KernelPoint[] = [];
    for (const [name, byError] of this.series) {
      for (const [error, hist] of byError) {
        const attributes: Attributes = { [ATTRS.DNS_QUESTION_NAME]: name };
        if (error) attributes[ATTRS.ERROR_TYPE] = error;
        points.push({ attributes, hist: { sumNs: hist.sumNs, slots: hist.slots.slice() } }); // a copy: this one goes on counting
      }
    }
    return [
      { name: METRICS.DNS_LOOKUP_DURATION, unit: 's', description: 'Duration of DNS lookups (getaddrinfo through libuv), by name asked for.', kind: 'histogram', points },
    ];
  }
}

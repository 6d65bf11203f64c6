/**
 * The sockets collector: bpf/sockets.bpf.c's maps as TCP metrics of this process.
 */
import * as fs from 'fs';
import * as path from 'path';
import type { Attributes } from '@opentelemetry/api';
import type { Capabilities } from './capabilities';
import type { Collector, KernelMetric, KernelPoint } from './collector';
import type { ResolvedConfig } from './config';
import {
  CONN_EVENT_CLOSED,
  ConnEvent,
  decodeConnEvent,
  decodeHealth,
  decodeSeriesKey,
  decodeSeriesStats,
  encodeListenerKey,
  LAYOUTS,
  NET_IPV4,
  SeriesKey,
  SIDE_CLIENT,
  SIDE_NONE,
  SocketsHealth,
} from './bpf-layout';
import { debug } from './diag';
import { BPF_OBJECT_DIR, NativeAddon, NativeObject, NativeRingBuffer } from './native';
import { disabledReason, Measurement, ProbeRunStats, ProbeSet, ProbeStatus } from './probes';
import { ATTRS, METRICS, VALUES } from './semconv';
import { setTarget, u64 } from './target';

export const SOCKETS_OBJECT = path.join(BPF_OBJECT_DIR, 'sockets.bpf.o');

/** Hook variants of each measurement, in order of preference. Program names are the C functions of sockets.bpf.c. */
export const SOCKET_MEASUREMENTS: Measurement[] = [
  {
    name: 'tcp.state',
    description: 'connects, accepts and closes: opened, failed, handshake time, lifetime',
    variants: [
      { hook: 'kprobe', programs: ['state_kprobe', 'listen_kprobe', 'destroy_kprobe'] },
      { hook: 'fentry', programs: ['state_fentry', 'listen_fexit', 'destroy_fentry'] },
      { hook: 'tracepoint', programs: ['state_raw_tp', 'destroy_raw_tp'] },
    ],
  },
  {
    name: 'tcp.bytes',
    description: 'payload bytes sent and received',
    variants: [
      { hook: 'kprobe', programs: ['send_kprobe', 'send_kretprobe', 'recv_kprobe', 'recv_kretprobe'] },
      { hook: 'fentry', programs: ['send_fexit', 'recv_fexit'] },
      { hook: 'tracepoint', programs: ['send_raw_tp', 'recv_raw_tp'] },
    ],
  },
  {
    name: 'tcp.rtt',
    description: 'smoothed RTT samples while a connection lives (one at close comes with tcp.state)',
    variants: [
      { hook: 'kprobe', programs: ['rtt_kprobe'] },
      { hook: 'fentry', programs: ['rtt_fentry'] },
      { hook: 'tracepoint', programs: ['rtt_raw_tp'] },
    ],
  },
  {
    name: 'tcp.retransmits',
    description: 'retransmitted segments as they happen (also folded in at every ACK and at close)',
    variants: [
      { hook: 'kprobe', programs: ['retransmit_kprobe'] },
      { hook: 'fentry', programs: ['retransmit_fentry'] },
      { hook: 'tracepoint', programs: ['retransmit_raw_tp'] },
    ],
  },
  {
    name: 'tcp.resets',
    description: 'RST segments sent and received',
    variants: [
      { hook: 'kprobe', programs: ['reset_v4_kprobe', 'reset_v6_kprobe', 'reset_active_kprobe', 'reset_recv_kprobe'] },
      { hook: 'fentry', programs: ['reset_v4_fentry', 'reset_v6_fentry', 'reset_active_fentry', 'reset_recv_fentry'] },
      { hook: 'tracepoint', programs: ['reset_send_raw_tp', 'reset_recv_raw_tp'] },
    ],
  },
];

/** errno values a failed connect can carry, by name as Node reports them (err.code). */
const ERRNO_NAMES: Record<number, string> = {
  103: 'ECONNABORTED',
  104: 'ECONNRESET',
  110: 'ETIMEDOUT',
  111: 'ECONNREFUSED',
  113: 'EHOSTUNREACH',
  101: 'ENETUNREACH',
  112: 'EHOSTDOWN',
  100: 'ENETDOWN',
  71: 'EPROTO',
};

/** Socket inodes of this process's open fds. */
function ownSocketInodes(): Set<string> {
  const inodes = new Set<string>();
  try {
    for (const fd of fs.readdirSync('/proc/self/fd')) {
      try {
        const m = /^socket:\[(\d+)\]$/.exec(fs.readlinkSync(`/proc/self/fd/${fd}`));
        if (m) inodes.add(m[1]);
      } catch {
        // the fd closed meanwhile
      }
    }
  } catch {
    // no /proc
  }
  return inodes;
}

/** Ports of this process's TCP listening sockets that exist already (listen() before the probes attached). */
function ownListeningPorts(): number[] {
  const own = ownSocketInodes();
  const ports = new Set<number>();
  for (const file of ['/proc/self/net/tcp', '/proc/self/net/tcp6']) {
    let text: string;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      // sl local_address rem_address st ... inode: state 0A is LISTEN
      if (f.length < 10 || f[3] !== '0A' || !own.has(f[9])) continue;
      ports.add(parseInt(f[1].split(':')[1], 16));
    }
  }
  return [...ports];
}

function netnsInode(): number {
  try {
    return Number(fs.statSync('/proc/self/ns/net').ino);
  } catch {
    return 0;
  }
}

export class SocketsCollector implements Collector {
  readonly name = 'sockets';
  private probes?: ProbeSet;
  private ring?: NativeRingBuffer;
  private bss?: string;
  private readonly events = { closed: 0, failed: 0 };
  /** Called for each connection that closed or failed (from the ring buffer), for whoever needs single connections. */
  onConnectionEvent?: (e: ConnEvent) => void;

  constructor(
    private readonly addon: NativeAddon,
    private readonly config: ResolvedConfig,
    private readonly caps: Capabilities,
    private readonly objectPath: string = SOCKETS_OBJECT,
  ) {}

  /** Globals and map sizes, applied to every instance of the object before load. */
  private readonly configure = (obj: NativeObject): void => {
    setTarget(obj, this.caps);
    obj.setGlobal('rtt_sample_interval_ns', u64(BigInt(this.config.rttSampleIntervalMillis) * 1_000_000n));
    obj.setMaxEntries('conns', this.config.maxConnections);
    obj.setMaxEntries('series', this.config.maxSeries + 1); // + the overflow series
  };

  /** The object's maps, loaded and configured, with no program attached yet (also used by `doctor`). */
  createProbeSet(): ProbeSet {
    return new ProbeSet(this.addon, this.objectPath, SOCKET_MEASUREMENTS, this.configure, this.caps);
  }

  start(): void {
    this.probes = this.createProbeSet();
    try {
      this.attach(this.probes);
    } catch (err) {
      this.stop();
      throw err;
    }
  }

  private attach(probes: ProbeSet): void {
    // The overflow series must exist before anything can overflow: the kernel cannot create it once the map is full.
    probes.map('series').update(Buffer.alloc(LAYOUTS.series_key.size), Buffer.alloc(LAYOUTS.series_stats.size), 1);
    const netns = netnsInode();
    const listeners = probes.map('listeners');
    for (const port of ownListeningPorts()) listeners.update(encodeListenerKey(netns, port), Buffer.from([1]));
    this.bss = probes.baseObject().maps().find(m => m.name.endsWith('.bss'))?.name;
    this.ring = probes.baseObject().ringBuffer('conn_events', records => {
      for (const r of records) {
        const e = decodeConnEvent(r);
        if (e.kind === CONN_EVENT_CLOSED) this.events.closed++;
        else this.events.failed++;
        this.onConnectionEvent?.(e);
      }
    });
    probes.attach(this.config.attachMode, name => disabledReason(this.config, name));
    debug(`sockets: ${probes.status().map(s => `${s.name}=${s.hook ?? 'off'}`).join(' ')}`);
  }

  status(): ProbeStatus[] {
    return this.probes?.status() ?? [];
  }

  runStats(): Map<string, ProbeRunStats> {
    return this.probes?.runStats() ?? new Map();
  }

  /** Connection events seen so far (from the ring buffer). */
  eventCounts(): { closed: number; failed: number } {
    return { ...this.events };
  }

  health(): SocketsHealth | undefined {
    if (!this.probes || !this.bss) return undefined;
    const v = this.probes.baseObject().map(this.bss).lookup(Buffer.alloc(4));
    return v ? decodeHealth(v, 0) : undefined;
  }

  collect(): KernelMetric[] {
    if (!this.probes) return [];
    this.ring?.consume();
    const io: KernelPoint[] = [];
    const opened: KernelPoint[] = [];
    const failed: KernelPoint[] = [];
    const retransmits: KernelPoint[] = [];
    const resets: KernelPoint[] = [];
    const connect: KernelPoint[] = [];
    const lifetime: KernelPoint[] = [];
    const rtt: KernelPoint[] = [];
    for (const [k, v] of this.probes.map('series').entries()) {
      const key = decodeSeriesKey(k);
      const s = decodeSeriesStats(v);
      const attrs = seriesAttributes(key);
      if (key.err !== 0) {
        if (s.failed) failed.push({ attributes: { ...attrs, [ATTRS.ERROR_TYPE]: ERRNO_NAMES[key.err] ?? `errno ${key.err}` }, value: s.failed });
        continue;
      }
      const counter = (into: KernelPoint[], value: number, extra: Attributes = {}) => {
        if (value > 0) into.push({ attributes: { ...attrs, ...extra }, value });
      };
      counter(io, s.txBytes, { [ATTRS.NETWORK_IO_DIRECTION]: VALUES.DIRECTION_TRANSMIT });
      counter(io, s.rxBytes, { [ATTRS.NETWORK_IO_DIRECTION]: VALUES.DIRECTION_RECEIVE });
      counter(opened, s.opened);
      counter(retransmits, s.retransmits);
      counter(resets, s.resetsSent, { [ATTRS.TCP_RESET_DIRECTION]: VALUES.RESET_SENT });
      counter(resets, s.resetsReceived, { [ATTRS.TCP_RESET_DIRECTION]: VALUES.RESET_RECEIVED });
      if (s.connect.slots.some(c => c > 0)) connect.push({ attributes: attrs, hist: s.connect });
      if (s.lifetime.slots.some(c => c > 0)) lifetime.push({ attributes: attrs, hist: s.lifetime });
      if (s.rtt.slots.some(c => c > 0)) rtt.push({ attributes: attrs, hist: s.rtt });
    }
    return [
      { name: METRICS.PROCESS_NETWORK_IO, unit: 'By', description: 'TCP payload bytes the process sent and received, per server side of the connection.', kind: 'counter', points: io },
      { name: METRICS.TCP_CONNECTION_OPENED, unit: '{connection}', description: 'TCP connections that reached ESTABLISHED.', kind: 'counter', points: opened },
      { name: METRICS.TCP_CONNECTION_FAILED, unit: '{connection}', description: 'TCP connects that failed, by error.type.', kind: 'counter', points: failed },
      { name: METRICS.TCP_RETRANSMITS, unit: '{segment}', description: 'TCP segments retransmitted.', kind: 'counter', points: retransmits },
      { name: METRICS.TCP_RESETS, unit: '{segment}', description: 'TCP RST segments sent and received.', kind: 'counter', points: resets },
      { name: METRICS.TCP_CONNECT_DURATION, unit: 's', description: 'TCP handshake time.', kind: 'histogram', points: connect },
      { name: METRICS.TCP_CONNECTION_DURATION, unit: 's', description: 'TCP connection lifetime, from ESTABLISHED to CLOSE.', kind: 'histogram', points: lifetime },
      { name: METRICS.TCP_RTT, unit: 's', description: 'Smoothed TCP round-trip time samples.', kind: 'histogram', points: rtt },
    ];
  }

  stop(): void {
    this.ring?.close();
    this.ring = undefined;
    this.probes?.close();
  }
}

export function seriesAttributes(key: SeriesKey): Attributes {
  if (key.side === SIDE_NONE) return { [ATTRS.OTEL_METRIC_OVERFLOW]: true };
  const attrs: Attributes = {
    [ATTRS.NETWORK_TRANSPORT]: VALUES.TRANSPORT_TCP,
    [ATTRS.NETWORK_TYPE]: key.family === NET_IPV4 ? VALUES.TYPE_IPV4 : VALUES.TYPE_IPV6,
    [ATTRS.TCP_CONNECTION_SIDE]: key.side === SIDE_CLIENT ? VALUES.SIDE_CLIENT : VALUES.SIDE_SERVER,
    [ATTRS.SERVER_PORT]: key.port,
  };
  if (key.side === SIDE_CLIENT && key.address) attrs[ATTRS.SERVER_ADDRESS] = key.address;
  return attrs;
}

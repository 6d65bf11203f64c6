/**
 * The sockets collector: bpf/sockets.bpf.c's maps as TCP metrics of this process.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import type { Attributes } from '@opentelemetry/api';
import type { Capabilities } from './capabilities';
import type { Collector, KernelMetric, KernelPoint } from './collector';
import type { ResolvedConfig } from './config';
import {
  CONN_EVENT_CLOSED,
  CONN_EVENT_HANDED_OVER,
  ConnEvent,
  decodeConnEvent,
  decodeHealth,
  decodeSeriesKey,
  decodeSeriesStats,
  encodeListenerAddrKey,
  encodeListenerKey,
  LAYOUTS,
  Log2Histogram,
  NET_IPV4,
  SeriesKey,
  SIDE_CLIENT,
  SIDE_NONE,
  SocketsHealth,
} from './bpf-layout';
import { debug } from './diag';
import { BPF_OBJECT_DIR, NativeAddon, NativeObject, NativeRingBuffer } from './native';
import type { TcpSocketReader } from './native';
import { disabledReason, Measurement, ProbeRunStats, ProbeSet, ProbeStatus } from './probes';
import { ATTRS, METRICS, VALUES } from './semconv';
import { ConnectionCounters, seriesId } from './connections';
import { addHist } from './histogram';
import { runSteps, Steps } from './turns';
import { setTarget, u32 } from './target';
import { TCP_INFO, TCP_STATES } from './tcpinfo';

export const SOCKETS_OBJECT = path.join(BPF_OBJECT_DIR, 'sockets.bpf.o');

/**
 * Hook variants of each BPF measurement, in order of preference. Program names are the C functions of sockets.bpf.c.
 * tcp.bytes and tcp.rtt need no program of their own: see LIVE_MEASUREMENTS.
 */
export const SOCKET_MEASUREMENTS: Measurement[] = [
  {
    name: 'tcp.state',
    description: 'connects, accepts and closes: opened, failed, handshake time, lifetime',
    variants: [
      { hook: 'kprobe', programs: ['state_kprobe', 'listen_kprobe', 'listen_kretprobe', 'destroy_kprobe'] },
      { hook: 'fentry', programs: ['state_fentry', 'listen_fexit', 'destroy_fentry'] },
      { hook: 'tracepoint', programs: ['state_raw_tp', 'destroy_raw_tp'] },
    ],
  },
  {
    name: 'tcp.retransmits',
    description: 'retransmitted segments as they happen (folded in again at close)',
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

/**
 * Read from the kernel's per-connection counters of the process's own sockets (TCP_INFO) at every collection, and from
 * tcp.state's close event for connections that end between two: no hook per send, receive or segment. They work
 * wherever tcp.state attaches.
 */
export const LIVE_MEASUREMENTS: { name: string; description: string }[] = [
  { name: 'tcp.bytes', description: 'payload bytes written and received (TCP_INFO of live sockets; final counts at close)' },
  { name: 'tcp.rtt', description: 'smoothed RTT of live connections that carried data since the last collection, and at close' },
];

/**
 * Fds read per step of a collection's live read: one step for most processes; 0.3-0.6 ms a step on this project's
 * machine when all are busy sockets (docs/benchmark.md).
 */
const LIVE_READ_STEP = 128;

/** The name of an errno value a failed connect carries (sk_err, or the kernel side's own), as Node reports it (err.code). */
const ERRNO_NAMES = new Map([
  ...Object.entries(os.constants.errno).map(([name, value]) => [value, name] as const),
  [112, 'EHOSTDOWN'], // not in Node's table; the kernel's sk_err after an ICMP host-down
]);

function netnsInode(): number {
  try {
    return Number(fs.statSync('/proc/self/ns/net').ino);
  } catch {
    return 0;
  }
}

/**
 * How many sockets listen on each port of the process's network namespace, whichever process they belong to. From
 * NETLINK_SOCK_DIAG (addon.listeningTcpPorts(): the kernel visits the listening sockets only, 0.1 ms where
 * /proc/self/net/tcp took 110 ms with 36,000 connections in the namespace), or, where the kernel has no inet_diag,
 * from /proc.
 */
export function listeningPortsOfNetns(addon: Pick<NativeAddon, 'listeningTcpPorts'>): Map<number, number> {
  const found = addon.listeningTcpPorts();
  if (typeof found === 'number') {
    debug(`sockets: no sock_diag (${ERRNO_NAMES.get(-found) ?? -found}), listening ports read from /proc/self/net/tcp`);
    return listeningPortsFromProc();
  }
  const ports = new Map<number, number>();
  for (const port of found) if (port > 0) ports.set(port, (ports.get(port) ?? 0) + 1);
  return ports;
}

/** The same from the LISTEN lines (st 0A) of /proc/self/net/tcp and tcp6, whose local address ends in the port in hex. */
export function listeningPortsFromProc(files = ['/proc/self/net/tcp', '/proc/self/net/tcp6']): Map<number, number> {
  const ports = new Map<number, number>();
  for (const file of files) {
    let text: string;
    try {
      text = fs.readFileSync(file, 'latin1');
    } catch {
      continue; // no IPv6 in this kernel, or no /proc
    }
    for (const line of text.split('\n')) {
      const f = line.trim().split(/\s+/);
      if (f[3] !== '0A') continue;
      const port = parseInt(f[1].slice(f[1].lastIndexOf(':') + 1), 16);
      if (port > 0) ports.set(port, (ports.get(port) ?? 0) + 1);
    }
  }
  return ports;
}

export class SocketsCollector implements Collector {
  readonly name = 'sockets';
  private probes?: ProbeSet;
  private ring?: NativeRingBuffer;
  private bss?: string;
  private readonly events = { closed: 0, failed: 0 };
  private live?: ConnectionCounters;
  private stopped = false;
  private readonly netns = netnsInode();
  /** Listening ports of before the probes that found netns_listeners full. */
  private seedUntracked = 0;
  /** The sockets whose counters moved since the previous pass (addon.tcpSocketReader()). */
  private readMoved?: TcpSocketReader;
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
    obj.setGlobal('target_netns', u32(this.netns));
    obj.setMaxEntries('conns', this.config.maxConnections);
    obj.setMaxEntries('series', this.config.maxSeries + 1); // + the overflow series
  };

  /** The object's maps, loaded and configured, with no program attached yet (also used by `doctor`). */
  createProbeSet(): ProbeSet {
    return new ProbeSet(this.addon, this.objectPath, SOCKET_MEASUREMENTS, this.configure, this.caps);
  }

  start(): void {
    this.stopped = false;
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
    // Connections and listening sockets that exist already: their counters so far predate us.
    const live = new ConnectionCounters(this.config.maxSeries);
    const netns = this.netns;
    const listeners = probes.map('listeners');
    // Each collection reads the sockets that moved since the previous one: an idle connection has nothing to add.
    const moved = this.addon.tcpSocketReader();
    this.readMoved = moved;
    const sockets = moved();
    // one listening socket per port as far as the kernel side knows (the count of bpf/sockets.bpf.c's listeners map),
    // and one per port and address (listener_addrs: which of a port's addresses are ours)
    const listenerAddrs = probes.map('listener_addrs');
    for (const s of sockets) {
      if (s.info[TCP_INFO.STATE] !== TCP_STATES.LISTEN) continue;
      const key = encodeListenerAddrKey(netns, s.localPort, s.localAddress);
      try {
        if (key) listenerAddrs.update(key, u32(1));
      } catch {
        // full (more listening sockets than it holds): their port is still known, by port alone
      }
    }
    for (const port of live.baseline(sockets)) listeners.update(encodeListenerKey(netns, port), u32(1));
    this.bss = probes.baseObject().maps().find(m => m.name.endsWith('.bss'))?.name;
    this.ring = probes.baseObject().ringBuffer('conn_events', records => {
      for (const r of records) {
        const e = decodeConnEvent(r);
        if (e.kind === CONN_EVENT_HANDED_OVER) {
          this.live?.handedOver(e);
          continue;
        }
        if (e.kind === CONN_EVENT_CLOSED) this.events.closed++;
        else this.events.failed++;
        this.live?.closed(e);
        this.onConnectionEvent?.(e);
      }
    });
    probes.attach(this.config.attachMode, name => disabledReason(this.config, name));
    // every process's listeners of before the probes, by port, read once they watch listen() (none missed in between;
    // a port they counted already keeps their count): a connection handed over to us on one is server side. A full
    // map (more listening ports than it holds) leaves the rest out, counted as listener_map_full.
    const netnsListeners = probes.map('netns_listeners');
    for (const [port, n] of listeningPortsOfNetns(this.addon)) {
      try {
        netnsListeners.update(encodeListenerKey(netns, port), u32(n), 1 /* BPF_NOEXIST */);
      } catch (err) {
        if ((err as { errno?: number }).errno === os.constants.errno.E2BIG) this.seedUntracked++;
      }
    }
    // read from the kernel side only in a pass that meets a socket not classified yet (a map walk of two syscalls a port)
    live.listenerPorts(() => this.netnsListenerPorts());
    if (probes.status().find(p => p.name === 'tcp.state')?.attached && !this.liveDisabled('tcp.bytes')) this.live = live;
    debug(`sockets: ${probes.status().map(s => `${s.name}=${s.hook ?? 'off'}`).join(' ')}`);
  }

  private liveDisabled(name: string): string | false {
    return disabledReason(this.config, name);
  }

  status(): ProbeStatus[] {
    if (!this.probes) return [];
    const state = this.probes.status().find(p => p.name === 'tcp.state');
    const live = LIVE_MEASUREMENTS.map((m): ProbeStatus => {
      const disabled = this.liveDisabled(m.name);
      if (disabled) return { name: m.name, attached: false, reason: disabled, attempts: [] };
      if (!this.live) return { name: m.name, attached: false, reason: `needs tcp.state (${state?.reason ?? 'not attached'})`, attempts: [] };
      return { name: m.name, attached: true, hook: 'tcp_info', attempts: [{ hook: 'tcp_info', ok: true }] };
    });
    const all = this.probes.status();
    return [all[0], ...live, ...all.slice(1)];
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
    if (!v) return undefined;
    const h = decodeHealth(v, 0);
    // byte readings that found the series map of user space full count as the kernel's overflows do
    return { ...h, seriesOverflow: h.seriesOverflow + (this.live?.overflowed ?? 0) };
  }

  dropped(): [string, number][] {
    const h = this.health();
    if (!h) return [];
    return [
      ['series_map_full', h.seriesOverflow],
      ['connection_map_full', h.connsUntracked],
      ['ring_buffer_full', h.eventsDropped],
      ['listener_map_full', h.listenersUntracked + this.seedUntracked],
    ];
  }

  collect(): KernelMetric[] {
    return runSteps(this.collectSteps());
  }

  /** In steps: the closed connections; the live ones (one step per LIVE_READ_STEP fds); the series map and the metrics. */
  *collectSteps(): Steps<KernelMetric[]> {
    if (!this.probes || this.stopped) return [];
    this.ring?.consume(); // closes first: a connection read below and closed later then adds only its remainder
    yield;
    if (this.stopped) return []; // stop() closed the maps between two steps
    // the live sockets in steps of LIVE_READ_STEP fds: a process with thousands of connections waits for each step only
    for (let sockets; this.live && this.readMoved && (sockets = this.readMoved(LIVE_READ_STEP)) !== null; ) {
      this.live.read(sockets);
      yield;
      if (this.stopped) return [];
    }
    const io: KernelPoint[] = [];
    const opened: KernelPoint[] = [];
    const failed: KernelPoint[] = [];
    const retransmits: KernelPoint[] = [];
    const resets: KernelPoint[] = [];
    const connect: KernelPoint[] = [];
    const lifetime: KernelPoint[] = [];
    const rtt: KernelPoint[] = [];
    const rttAtClose = new Map<string, { attributes: Attributes; hist: Log2Histogram }>();
    for (const [k, v] of this.probes.map('series').entries()) {
      const key = decodeSeriesKey(k);
      const s = decodeSeriesStats(v);
      const attrs = seriesAttributes(key);
      if (key.err !== 0) {
        if (s.failed) failed.push({ attributes: { ...attrs, [ATTRS.ERROR_TYPE]: ERRNO_NAMES.get(key.err) ?? `errno ${key.err}` }, value: s.failed });
        continue;
      }
      const counter = (into: KernelPoint[], value: number, extra: Attributes = {}) => {
        if (value > 0) into.push({ attributes: { ...attrs, ...extra }, value });
      };
      counter(opened, s.opened);
      // failed connects have series of their own, by error; those that found the map full are in the overflow series
      counter(failed, s.failed, { [ATTRS.ERROR_TYPE]: VALUES.OTHER });
      counter(retransmits, s.retransmits);
      counter(resets, s.resetsSent, { [ATTRS.TCP_RESET_DIRECTION]: VALUES.RESET_SENT });
      counter(resets, s.resetsReceived, { [ATTRS.TCP_RESET_DIRECTION]: VALUES.RESET_RECEIVED });
      if (s.connect.slots.some(c => c > 0)) connect.push({ attributes: attrs, hist: s.connect });
      if (s.lifetime.slots.some(c => c > 0)) lifetime.push({ attributes: attrs, hist: s.lifetime });
      if (s.rtt.slots.some(c => c > 0)) rttAtClose.set(seriesId(key), { attributes: attrs, hist: s.rtt });
    }
    for (const t of this.live?.values() ?? []) {
      const attrs = seriesAttributes(t.key);
      if (t.txBytes > 0) io.push({ attributes: { ...attrs, [ATTRS.NETWORK_IO_DIRECTION]: VALUES.DIRECTION_TRANSMIT }, value: t.txBytes });
      if (t.rxBytes > 0) io.push({ attributes: { ...attrs, [ATTRS.NETWORK_IO_DIRECTION]: VALUES.DIRECTION_RECEIVE }, value: t.rxBytes });
      if (!t.rtt.slots.some(c => c > 0) || this.liveDisabled('tcp.rtt')) continue;
      const id = seriesId(t.key);
      const atClose = rttAtClose.get(id);
      // a copy: the live histogram goes on counting, and a delta needs this reading as it is now
      rttAtClose.set(id, { attributes: attrs, hist: atClose ? addHist(atClose.hist, t.rtt) : { sumNs: t.rtt.sumNs, slots: t.rtt.slots.slice() } });
    }
    rtt.push(...rttAtClose.values());
    return [
      { name: METRICS.PROCESS_NETWORK_IO, unit: 'By', description: 'TCP payload bytes the process wrote and received, per server side of the connection.', kind: 'counter', points: io },
      { name: METRICS.TCP_CONNECTION_OPENED, unit: '{connection}', description: 'TCP connections that reached ESTABLISHED.', kind: 'counter', points: opened },
      { name: METRICS.TCP_CONNECTION_FAILED, unit: '{connection}', description: 'TCP connects that failed, by error.type.', kind: 'counter', points: failed },
      { name: METRICS.TCP_RETRANSMITS, unit: '{segment}', description: 'TCP segments retransmitted.', kind: 'counter', points: retransmits },
      { name: METRICS.TCP_RESETS, unit: '{segment}', description: 'TCP RST segments sent and received.', kind: 'counter', points: resets },
      { name: METRICS.TCP_CONNECT_DURATION, unit: 's', description: 'TCP handshake time.', kind: 'histogram', points: connect },
      { name: METRICS.TCP_CONNECTION_DURATION, unit: 's', description: 'TCP connection lifetime, from ESTABLISHED to CLOSE.', kind: 'histogram', points: lifetime },
      { name: METRICS.TCP_RTT, unit: 's', description: 'Smoothed TCP round-trip time samples.', kind: 'histogram', points: rtt },
    ];
  }

  /** The listening ports of the network namespace as the kernel side keeps them (bpf/sockets.bpf.c netns_listeners). */
  private netnsListenerPorts(): Set<number> {
    const ports = new Set<number>();
    const f = LAYOUTS.listener_key.fields;
    for (const [k] of this.probes?.map('netns_listeners').entries() ?? []) {
      if (k.readUInt32LE(f.netns.offset) === this.netns) ports.add(k.readUInt16LE(f.port.offset));
    }
    return ports;
  }

  stop(): void {
    this.stopped = true;
    this.readMoved = undefined; // with a pass left open, its listing's fd closes when the reader is collected
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

/**
 * Bytes and RTT of the process's TCP connections, from the kernel's own per-connection counters: read on every live
 * socket at collection time (TCP_INFO, src/tcpinfo.ts), and for a connection that ended between two collections from
 * its final counters in bpf/sockets.bpf.c's close event. Nothing runs per send, receive or segment.
 *
 * Each connection is known by its addresses. What was already counted for it is remembered, so that every reading
 * adds only its difference, and the close event adds the rest and forgets the connection. Connections that existed
 * before start() count from their first reading (taken at start).
 */
import type { ConnEvent, Log2Histogram, SeriesKey } from './bpf-layout';
import { NET_IPV4, NET_IPV6, SIDE_CLIENT, SIDE_NONE, SIDE_SERVER } from './bpf-layout';
import { emptyHist, recordNs } from './histogram';
import type { NativeTcpSocket } from './native';
import { countersOf, TCP_INFO, TCP_STATES } from './tcpinfo';

export interface SeriesTotals {
  key: SeriesKey;
  txBytes: number;
  rxBytes: number;
  /** Smoothed RTT of live connections that carried data since the previous collection, one sample each. */
  rtt: Log2Histogram;
}

interface Counted {
  tx: number;
  rx: number;
}

const OVERFLOW: SeriesKey = { port: 0, family: 0, side: SIDE_NONE, err: 0 };

/** ::ffff:a.b.c.d (an IPv4 peer of a dual-stack socket) as a.b.c.d, as bpf/sockets.bpf.c reports it. */
function unmapped(address: string | undefined): string | undefined {
  return address?.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address;
}

function connectionId(localAddress: string | undefined, localPort: number, peerAddress: string | undefined, peerPort: number): string {
  return `${unmapped(localAddress) ?? ''}|${localPort}|${unmapped(peerAddress) ?? ''}|${peerPort}`;
}

/** A series' identity, as a map key (the attributes it is exported with follow from it: src/sockets.ts). */
export function seriesId(k: SeriesKey): string {
  return `${k.side}|${k.family}|${k.address ?? ''}|${k.port}|${k.err}`;
}

export class ConnectionCounters {
  private readonly counted = new Map<string, Counted>();
  private readonly series = new Map<string, SeriesTotals>();
  private readonly listening = new Set<number>();
  /** Ports some process listens on in the network namespace (a cluster's primary for its workers): see listenerPorts. */
  private readNetnsListening: () => ReadonlySet<number> = () => new Set();
  /** Read when a pass first needs it: only a socket not classified yet does. */
  private netnsListening?: ReadonlySet<number>;
  /**
   * What follows from a live socket's addresses, worked out once per socket: the addon's reader returns the same
   * record for a socket as long as its fd holds it (native/tcp.cc).
   */
  private readonly known = new WeakMap<NativeTcpSocket, { id: string; totals?: SeriesTotals }>();
  /** Readings that could not get a series of their own because maxSeries was reached. */
  overflowed = 0;

  constructor(private readonly maxSeries: number) {}

  /**
   * Takes the first reading of every connection as already counted (they predate the SDK). Returns the ports the
   * process listens on.
   */
  baseline(sockets: NativeTcpSocket[]): number[] {
    for (const s of sockets) {
      if (s.info[TCP_INFO.STATE] === TCP_STATES.LISTEN) {
        this.listening.add(s.localPort);
        continue;
      }
      const c = countersOf(s.info);
      if (c && s.peerPort !== undefined) this.counted.set(connectionId(s.localAddress, s.localPort, s.peerAddress, s.peerPort), { tx: c.txBytes, rx: c.rxBytes });
    }
    return [...this.listening];
  }

  /** Adds what every live connection carried since its previous reading. */
  read(sockets: NativeTcpSocket[]): void {
    this.netnsListening = undefined; // listeners may have come and gone since the previous pass
    for (const s of sockets) if (s.info[TCP_INFO.STATE] === TCP_STATES.LISTEN) this.listening.add(s.localPort);
    for (const s of sockets) {
      if (s.peerPort === undefined || s.peerAddress === undefined) continue;
      const c = countersOf(s.info);
      if (!c || c.state === TCP_STATES.SYN_SENT || c.state === TCP_STATES.SYN_RECV) continue;
      const known = this.knownOf(s);
      let counted = this.counted.get(known.id);
      if (!counted) this.counted.set(known.id, (counted = { tx: 0, rx: 0 }));
      const tx = c.txBytes - counted.tx;
      const rx = c.rxBytes - counted.rx;
      counted.tx = c.txBytes;
      counted.rx = c.rxBytes;
      if (tx <= 0 && rx <= 0) continue;
      const totals = known.totals ?? this.totals(this.keyOf(s));
      if (totals.key !== OVERFLOW) known.totals = totals; // an overflowing reading is counted at every reading
      totals.txBytes += Math.max(tx, 0);
      totals.rxBytes += Math.max(rx, 0);
      if (c.srttUs > 0) recordNs(totals.rtt, BigInt(c.srttUs) * 1000n);
    }
  }

  /** A connection ended (its socket was destroyed): what it carried since its last reading, then forget it. */
  closed(e: ConnEvent): void {
    const id = connectionId(e.localAddress, e.localPort, e.peerAddress, e.peerPort);
    const before = this.counted.get(id) ?? { tx: 0, rx: 0 };
    this.counted.delete(id);
    const tx = e.txBytes - before.tx;
    const rx = e.rxBytes - before.rx;
    if (tx <= 0 && rx <= 0) return;
    const totals = this.totals(e.key);
    totals.txBytes += Math.max(tx, 0);
    totals.rxBytes += Math.max(rx, 0);
  }

  /**
   * The ports that any process listens on in the process's network namespace. A connection the process holds on one
   * of them was accepted, here or by a process that handed it over (a cluster's primary): it counts on the server side.
   */
  listenerPorts(read: () => ReadonlySet<number>): void {
    this.readNetnsListening = read;
  }

  /** A connection went to another process (bpf/sockets.bpf.c: CONN_EVENT_HANDED_OVER): what is left is the holder's. */
  handedOver(e: ConnEvent): void {
    this.counted.delete(connectionId(e.localAddress, e.localPort, e.peerAddress, e.peerPort));
  }

  /** Cumulative totals per series. */
  values(): SeriesTotals[] {
    return [...this.series.values()];
  }

  /** Connections being followed (for tests and self-telemetry). */
  get size(): number {
    return this.counted.size;
  }

  private knownOf(s: NativeTcpSocket): { id: string; totals?: SeriesTotals } {
    let known = this.known.get(s);
    if (!known) this.known.set(s, (known = { id: connectionId(s.localAddress, s.localPort, s.peerAddress, s.peerPort ?? 0) }));
    return known;
  }

  /** The series of a live socket: its peer if the process opened it, its own listening port if it accepted it. */
  private keyOf(s: NativeTcpSocket): SeriesKey {
    const peer = unmapped(s.peerAddress);
    const family = peer?.includes(':') ? NET_IPV6 : NET_IPV4; // an IPv4 peer of a dual-stack socket is IPv4
    if (this.listening.has(s.localPort) || (this.netnsListening ??= this.readNetnsListening()).has(s.localPort)) return { port: s.localPort, family, side: SIDE_SERVER, err: 0 };
    return { address: peer, port: s.peerPort ?? 0, family, side: SIDE_CLIENT, err: 0 };
  }

  private totals(key: SeriesKey): SeriesTotals {
    let id = seriesId(key);
    let totals = this.series.get(id);
    if (!totals && this.series.size >= this.maxSeries) {
      this.overflowed++;
      key = OVERFLOW;
      id = seriesId(key);
      totals = this.series.get(id);
    }
    if (!totals) {
      totals = { key, txBytes: 0, rxBytes: 0, rtt: emptyHist() };
      this.series.set(id, totals);
    }
    return totals;
  }
}

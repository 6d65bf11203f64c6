/**
 * The structs of bpf/histogram.h and bpf/sockets.h as they cross into user space. One table per struct (field,
 * offset, type); test/layout.test.js checks every size and offset against the BTF of the compiled object.
 */

import * as net from 'net';

export type FieldType = 'u8' | 'u16' | 'u32' | 'u64' | 'bytes16' | 'bytes' | 'hist' | 'series_key';

export interface StructLayout {
  name: string;
  size: number;
  fields: Record<string, { offset: number; type: FieldType }>;
}

/** Mirrors bpf/histogram.h. */
export const HIST_MAX_SLOTS = 48;
/** Slot k >= 1 holds (2^(k + HIST_MIN_EXP - 1), 2^(k + HIST_MIN_EXP)] seconds; slot 0 holds everything up to 2^HIST_MIN_EXP. */
export const HIST_MIN_EXP = -20;

export const NET_IPV4 = 4;
export const NET_IPV6 = 6;
export const SIDE_NONE = 0;
export const SIDE_CLIENT = 1;
export const SIDE_SERVER = 2;
export const CONN_EVENT_CLOSED = 1;
export const CONN_EVENT_FAILED = 2;
/** Another process closed a connection this one accepted: it was handed over (bpf/sockets.bpf.c). */
export const CONN_EVENT_HANDED_OVER = 3;

const HIST_SIZE = 8 + 8 * HIST_MAX_SLOTS;

export const LAYOUTS = {
  hist: { name: 'hist', size: HIST_SIZE, fields: { sum_ns: { offset: 0, type: 'u64' }, slots: { offset: 8, type: 'u64' } } },
  series_key: {
    name: 'series_key',
    size: 24,
    fields: {
      addr: { offset: 0, type: 'bytes16' },
      port: { offset: 16, type: 'u16' },
      family: { offset: 18, type: 'u8' },
      side: { offset: 19, type: 'u8' },
      err: { offset: 20, type: 'u32' },
    },
  },
  series_stats: {
    name: 'series_stats',
    size: 48 + 3 * HIST_SIZE,
    fields: {
      opened: { offset: 0, type: 'u64' },
      failed: { offset: 8, type: 'u64' },
      closed: { offset: 16, type: 'u64' },
      retransmits: { offset: 24, type: 'u64' },
      resets_sent: { offset: 32, type: 'u64' },
      resets_received: { offset: 40, type: 'u64' },
      connect: { offset: 48, type: 'hist' },
      lifetime: { offset: 48 + HIST_SIZE, type: 'hist' },
      rtt: { offset: 48 + 2 * HIST_SIZE, type: 'hist' },
    },
  },
  conn_state: {
    name: 'conn_state',
    size: 104,
    fields: {
      key: { offset: 0, type: 'series_key' },
      start_ns: { offset: 24, type: 'u64' },
      established_ns: { offset: 32, type: 'u64' },
      closed_ns: { offset: 40, type: 'u64' },
      retrans_seen: { offset: 48, type: 'u32' },
      resets: { offset: 52, type: 'u32' },
      local_port: { offset: 56, type: 'u16' },
      peer_port: { offset: 58, type: 'u16' },
      final: { offset: 60, type: 'u8' },
      closed_here: { offset: 61, type: 'u8' },
      handed_over: { offset: 62, type: 'u8' },
      shared_port: { offset: 63, type: 'u8' },
      tx_bytes: { offset: 64, type: 'u64' },
      rx_bytes: { offset: 72, type: 'u64' },
      local_addr: { offset: 80, type: 'bytes16' },
      handshake_us: { offset: 96, type: 'u32' },
      resets_sent_held: { offset: 100, type: 'u16' },
      resets_received_held: { offset: 102, type: 'u16' },
    },
  },
  listener_key: {
    name: 'listener_key',
    size: 8,
    fields: { netns: { offset: 0, type: 'u32' }, port: { offset: 4, type: 'u16' }, pad: { offset: 6, type: 'u16' } },
  },
  listener_addr_key: {
    name: 'listener_addr_key',
    size: 24,
    fields: { netns: { offset: 0, type: 'u32' }, port: { offset: 4, type: 'u16' }, pad: { offset: 6, type: 'u16' }, addr: { offset: 8, type: 'bytes16' } },
  },
  sockets_health: {
    name: 'sockets_health',
    size: 56,
    fields: {
      series_overflow: { offset: 0, type: 'u64' },
      conns_tracked: { offset: 8, type: 'u64' },
      conns_untracked: { offset: 16, type: 'u64' },
      conns_adopted: { offset: 24, type: 'u64' },
      events_dropped: { offset: 32, type: 'u64' },
      listeners_untracked: { offset: 40, type: 'u64' },
      conns_handed_over: { offset: 48, type: 'u64' },
    },
  },
  conn_event: {
    name: 'conn_event',
    size: 104,
    fields: {
      key: { offset: 0, type: 'series_key' },
      ts_ns: { offset: 24, type: 'u64' },
      duration_ns: { offset: 32, type: 'u64' },
      tx_bytes: { offset: 40, type: 'u64' },
      rx_bytes: { offset: 48, type: 'u64' },
      srtt_us: { offset: 56, type: 'u32' },
      retransmits: { offset: 60, type: 'u32' },
      local_port: { offset: 64, type: 'u16' },
      kind: { offset: 66, type: 'u8' },
      family: { offset: 67, type: 'u8' },
      peer_port: { offset: 68, type: 'u16' },
      pad: { offset: 70, type: 'u8' },
      local_addr: { offset: 72, type: 'bytes16' },
      peer_addr: { offset: 88, type: 'bytes16' },
    },
  },
  loop_state: {
    name: 'loop_state',
    size: 64 + HIST_SIZE + 64,
    fields: {
      idle_ns: { offset: 0, type: 'u64' },
      active_ns: { offset: 8, type: 'u64' },
      waits: { offset: 16, type: 'u64' },
      wait_started_ns: { offset: 24, type: 'u64' },
      wait_ended_ns: { offset: 32, type: 'u64' },
      task: { offset: 40, type: 'u64' },
      sys_started_ns: { offset: 48, type: 'u64' },
      sys_id: { offset: 56, type: 'u32' },
      in_wait: { offset: 60, type: 'u32' },
      active: { offset: 64, type: 'hist' },
      seen: { offset: 64 + HIST_SIZE, type: 'u64' },
    },
  },
} as const satisfies Record<string, StructLayout>;

/** A log2 histogram as the kernel keeps it; sumNs is exact, counts per slot. */
export interface Log2Histogram {
  sumNs: bigint;
  slots: number[];
}

export interface SeriesKey {
  address?: string;
  port: number;
  family: number;
  side: number;
  err: number;
}

export interface SeriesStats {
  opened: number;
  failed: number;
  closed: number;
  retransmits: number;
  resetsSent: number;
  resetsReceived: number;
  connect: Log2Histogram;
  lifetime: Log2Histogram;
  rtt: Log2Histogram;
}

/**
 * Little-endian u64 fields as numbers (exact below 2^53), read as two u32 through a DataView. Its getters are V8
 * builtins; Buffer's readBigUInt64LE is JavaScript, which a collection's few hundred histogram slots make hot enough
 * for V8 to compile, on a worker thread that then takes the application's CPU for about 2 ms in the middle of an
 * export (docs/benchmark.md).
 */
const viewOf = (b: Buffer, off: number, size: number) => new DataView(b.buffer, b.byteOffset + off, size);
const u64At = (v: DataView, off: number) => v.getUint32(off, true) + v.getUint32(off + 4, true) * 2 ** 32;
const u64 = (b: Buffer, off: number) => u64At(viewOf(b, off, 8), 0);

export function decodeHist(b: Buffer, off: number): Log2Histogram {
  const v = viewOf(b, off, HIST_SIZE);
  const slots = new Array<number>(HIST_MAX_SLOTS);
  for (let i = 0; i < HIST_MAX_SLOTS; i++) slots[i] = u64At(v, 8 + 8 * i);
  return { sumNs: v.getBigUint64(0, true), slots };
}

function formatAddress(addr: Buffer, family: number): string | undefined {
  if (addr.every(x => x === 0)) return undefined;
  if (family === NET_IPV4) return `${addr[0]}.${addr[1]}.${addr[2]}.${addr[3]}`;
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(addr.readUInt16BE(i).toString(16));
  // RFC 5952: compress the longest run of zero groups
  let best = -1, bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== '0') { i++; continue; }
    let j = i;
    while (j < 8 && groups[j] === '0') j++;
    if (j - i > bestLen && j - i > 1) { best = i; bestLen = j - i; }
    i = j;
  }
  if (best < 0) return groups.join(':');
  return `${groups.slice(0, best).join(':')}::${groups.slice(best + bestLen).join(':')}`;
}

export function decodeSeriesKey(b: Buffer, off = 0): SeriesKey {
  const f = LAYOUTS.series_key.fields;
  const family = b.readUInt8(off + f.family.offset);
  return {
    address: formatAddress(b.subarray(off, off + 16), family),
    port: b.readUInt16LE(off + f.port.offset),
    family,
    side: b.readUInt8(off + f.side.offset),
    err: b.readUInt32LE(off + f.err.offset),
  };
}

export function decodeSeriesStats(b: Buffer): SeriesStats {
  const f = LAYOUTS.series_stats.fields;
  return {
    opened: u64(b, f.opened.offset),
    failed: u64(b, f.failed.offset),
    closed: u64(b, f.closed.offset),
    retransmits: u64(b, f.retransmits.offset),
    resetsSent: u64(b, f.resets_sent.offset),
    resetsReceived: u64(b, f.resets_received.offset),
    connect: decodeHist(b, f.connect.offset),
    lifetime: decodeHist(b, f.lifetime.offset),
    rtt: decodeHist(b, f.rtt.offset),
  };
}

export function encodeListenerKey(netns: number, port: number): Buffer {
  const b = Buffer.alloc(LAYOUTS.listener_key.size);
  b.writeUInt32LE(netns, LAYOUTS.listener_key.fields.netns.offset);
  b.writeUInt16LE(port, LAYOUTS.listener_key.fields.port.offset);
  return b;
}

/**
 * bpf/sockets.h listener_addr_key: a listening socket's port and local address as the kernel side keys it: all zero
 * for any address, IPv4 (IPv4-mapped IPv6 too) in the first four bytes, IPv6 in sixteen. undefined for an address
 * that is neither.
 */
export function encodeListenerAddrKey(netns: number, port: number, address: string): Buffer | undefined {
  const bytes = addressBytes(address);
  if (!bytes) return undefined;
  const f = LAYOUTS.listener_addr_key.fields;
  const b = Buffer.alloc(LAYOUTS.listener_addr_key.size);
  b.writeUInt32LE(netns, f.netns.offset);
  b.writeUInt16LE(port, f.port.offset);
  bytes.copy(b, f.addr.offset);
  return b;
}

/** An address's bytes, 4 for IPv4 (and IPv4-mapped IPv6), 16 for IPv6; empty for any address. */
function addressBytes(address: string): Buffer | undefined {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  const v4 = mapped ? mapped[1] : address;
  if (net.isIPv4(v4)) return v4 === '0.0.0.0' ? Buffer.alloc(0) : Buffer.from(v4.split('.').map(Number));
  if (!net.isIPv6(address)) return undefined;
  const [head, tail] = address.split('::');
  const groups = (part?: string) => (part ? part.split(':') : []);
  const hi = groups(head);
  const lo = groups(tail);
  const all = tail === undefined ? hi : [...hi, ...Array(8 - hi.length - lo.length).fill('0'), ...lo];
  const b = Buffer.alloc(16);
  all.forEach((g, i) => b.writeUInt16BE(parseInt(g, 16), 2 * i));
  return b.every(x => x === 0) ? Buffer.alloc(0) : b;
}

export interface SocketsHealth {
  seriesOverflow: number;
  connsTracked: number;
  connsUntracked: number;
  connsAdopted: number;
  eventsDropped: number;
  listenersUntracked: number;
  connsHandedOver: number;
}

export function decodeHealth(b: Buffer, off: number): SocketsHealth {
  const f = LAYOUTS.sockets_health.fields;
  return {
    seriesOverflow: u64(b, off + f.series_overflow.offset),
    connsTracked: u64(b, off + f.conns_tracked.offset),
    connsUntracked: u64(b, off + f.conns_untracked.offset),
    connsAdopted: u64(b, off + f.conns_adopted.offset),
    eventsDropped: u64(b, off + f.events_dropped.offset),
    listenersUntracked: u64(b, off + f.listeners_untracked.offset),
    connsHandedOver: u64(b, off + f.conns_handed_over.offset),
  };
}

export interface ConnEvent {
  key: SeriesKey;
  tsNs: bigint;
  durationNs: number;
  txBytes: number;
  rxBytes: number;
  srttUs: number;
  retransmits: number;
  kind: number;
  /** The connection's addresses (IPv4 as a.b.c.d also through a dual-stack socket). */
  family: number;
  localAddress: string;
  localPort: number;
  peerAddress: string;
  peerPort: number;
}

export function decodeConnEvent(b: Buffer): ConnEvent {
  const f = LAYOUTS.conn_event.fields;
  return {
    key: decodeSeriesKey(b, f.key.offset),
    tsNs: b.readBigUInt64LE(f.ts_ns.offset),
    durationNs: u64(b, f.duration_ns.offset),
    txBytes: u64(b, f.tx_bytes.offset),
    rxBytes: u64(b, f.rx_bytes.offset),
    srttUs: b.readUInt32LE(f.srtt_us.offset),
    retransmits: b.readUInt32LE(f.retransmits.offset),
    kind: b.readUInt8(f.kind.offset),
    family: b.readUInt8(f.family.offset),
    localAddress: formatAddress(b.subarray(f.local_addr.offset, f.local_addr.offset + 16), b.readUInt8(f.family.offset)) ?? '',
    localPort: b.readUInt16LE(f.local_port.offset),
    peerAddress: formatAddress(b.subarray(f.peer_addr.offset, f.peer_addr.offset + 16), b.readUInt8(f.family.offset)) ?? '',
    peerPort: b.readUInt16LE(f.peer_port.offset),
  };
}

/** Mirrors bpf/runtime.h. */
export const RT_MAX_SYSCALLS = 512;

export interface LoopState {
  idleNs: bigint;
  activeNs: bigint;
  waits: number;
  waitStartedNs: bigint;
  waitEndedNs: bigint;
  inWait: boolean;
  active: Log2Histogram;
  /** Syscall numbers with samples in the syscalls array. */
  seen: number[];
}

export function decodeLoopState(b: Buffer, off = 0): LoopState {
  const f = LAYOUTS.loop_state.fields;
  return {
    idleNs: b.readBigUInt64LE(off + f.idle_ns.offset),
    activeNs: b.readBigUInt64LE(off + f.active_ns.offset),
    waits: u64(b, off + f.waits.offset),
    waitStartedNs: b.readBigUInt64LE(off + f.wait_started_ns.offset),
    waitEndedNs: b.readBigUInt64LE(off + f.wait_ended_ns.offset),
    inWait: b.readUInt32LE(off + f.in_wait.offset) !== 0,
    active: decodeHist(b, off + f.active.offset),
    seen: seenBits(b, off + f.seen.offset),
  };
}

function seenBits(b: Buffer, off: number): number[] {
  const ids: number[] = [];
  for (let w = 0; w < RT_MAX_SYSCALLS / 64; w++) {
    const word = b.readBigUInt64LE(off + 8 * w);
    for (let bit = 0; bit < 64; bit++) if ((word >> BigInt(bit)) & 1n) ids.push(w * 64 + bit);
  }
  return ids;
}

/** Mirrors bpf/dns.h. */
export const DNS_NAME_LEN = 256;

export const DNS_LAYOUTS = {
  dns_event: {
    name: 'dns_event',
    size: 16 + DNS_NAME_LEN,
    fields: {
      duration_ns: { offset: 0, type: 'u64' },
      status: { offset: 8, type: 'u32' },
      pad: { offset: 12, type: 'u32' },
      name: { offset: 16, type: 'bytes' },
    },
  },
  dns_health: {
    name: 'dns_health',
    size: 32,
    fields: {
      lookup_hits: { offset: 0, type: 'u64' },
      done_hits: { offset: 8, type: 'u64' },
      unmatched: { offset: 16, type: 'u64' },
      events_dropped: { offset: 24, type: 'u64' },
    },
  },
} as const satisfies Record<string, StructLayout>;

export interface DnsEvent {
  durationNs: bigint;
  /** 0, or libuv's UV_EAI_* code. */
  status: number;
  name: string;
}

export function decodeDnsEvent(b: Buffer): DnsEvent {
  const f = DNS_LAYOUTS.dns_event.fields;
  const raw = b.subarray(f.name.offset, f.name.offset + DNS_NAME_LEN);
  const end = raw.indexOf(0);
  return {
    durationNs: b.readBigUInt64LE(f.duration_ns.offset),
    status: b.readInt32LE(f.status.offset),
    name: raw.subarray(0, end < 0 ? raw.length : end).toString('utf8'),
  };
}

export interface DnsHealth {
  lookupHits: number;
  doneHits: number;
  unmatched: number;
  eventsDropped: number;
}

export function decodeDnsHealth(b: Buffer, off = 0): DnsHealth {
  const f = DNS_LAYOUTS.dns_health.fields;
  return {
    lookupHits: u64(b, off + f.lookup_hits.offset),
    doneHits: u64(b, off + f.done_hits.offset),
    unmatched: u64(b, off + f.unmatched.offset),
    eventsDropped: u64(b, off + f.events_dropped.offset),
  };
}

/** Mirrors bpf/tls.h. */
export const TLS_SIDE_CLIENT = 1;
export const TLS_SIDE_SERVER = 2;
export const TLS_ERR_NONE = 0;
export const TLS_ERR_ABORTED = 1;
export const TLS_ERR_NO_ALERT = 2;
export const TLS_ERR_ALERT = 0x100;

export const TLS_LAYOUTS = {
  tls_series_key: {
    name: 'tls_series_key',
    size: 8,
    fields: { side: { offset: 0, type: 'u32' }, err: { offset: 4, type: 'u32' } },
  },
  tls_event: {
    name: 'tls_event',
    size: 16,
    fields: { duration_ns: { offset: 0, type: 'u64' }, side: { offset: 8, type: 'u32' }, err: { offset: 12, type: 'u32' } },
  },
  tls_health: {
    name: 'tls_health',
    size: 88,
    fields: {
      connect_hits: { offset: 0, type: 'u64' },
      accept_hits: { offset: 8, type: 'u64' },
      return_hits: { offset: 16, type: 'u64' },
      fatal_hits: { offset: 24, type: 'u64' },
      free_hits: { offset: 32, type: 'u64' },
      read_hits: { offset: 40, type: 'u64' },
      write_hits: { offset: 48, type: 'u64' },
      rx_bytes: { offset: 56, type: 'u64' },
      tx_bytes: { offset: 64, type: 'u64' },
      series_overflow: { offset: 72, type: 'u64' },
      events_dropped: { offset: 80, type: 'u64' },
    },
  },
} as const satisfies Record<string, StructLayout>;

export interface TlsHealth {
  connectHits: number;
  acceptHits: number;
  returnHits: number;
  fatalHits: number;
  freeHits: number;
  readHits: number;
  writeHits: number;
  rxBytes: number;
  txBytes: number;
  seriesOverflow: number;
  eventsDropped: number;
}

export function decodeTlsHealth(b: Buffer, off = 0): TlsHealth {
  const f = TLS_LAYOUTS.tls_health.fields;
  return {
    connectHits: u64(b, off + f.connect_hits.offset),
    acceptHits: u64(b, off + f.accept_hits.offset),
    returnHits: u64(b, off + f.return_hits.offset),
    fatalHits: u64(b, off + f.fatal_hits.offset),
    freeHits: u64(b, off + f.free_hits.offset),
    readHits: u64(b, off + f.read_hits.offset),
    writeHits: u64(b, off + f.write_hits.offset),
    rxBytes: u64(b, off + f.rx_bytes.offset),
    txBytes: u64(b, off + f.tx_bytes.offset),
    seriesOverflow: u64(b, off + f.series_overflow.offset),
    eventsDropped: u64(b, off + f.events_dropped.offset),
  };
}

export function decodeTlsSeriesKey(b: Buffer): { side: number; err: number } {
  const f = TLS_LAYOUTS.tls_series_key.fields;
  return { side: b.readUInt32LE(f.side.offset), err: b.readUInt32LE(f.err.offset) };
}

/** Mirrors bpf/threadpool.h. */
export const TP_KINDS = ['fs', 'dns', 'crypto', 'zlib', 'user'] as const;

export const THREADPOOL_LAYOUTS = {
  tp_stats: {
    name: 'tp_stats',
    size: 2 * HIST_SIZE,
    fields: { wait: { offset: 0, type: 'hist' }, run: { offset: HIST_SIZE, type: 'hist' } },
  },
  tp_health: {
    name: 'tp_health',
    size: 64,
    fields: {
      submit_hits: { offset: 0, type: 'u64' },
      queue_hits: { offset: 8, type: 'u64' },
      fs_hits: { offset: 16, type: 'u64' },
      dns_hits: { offset: 24, type: 'u64' },
      job_hits: { offset: 32, type: 'u64' },
      return_hits: { offset: 40, type: 'u64' },
      unmatched: { offset: 48, type: 'u64' },
      running_full: { offset: 56, type: 'u64' },
    },
  },
} as const satisfies Record<string, StructLayout>;

export interface TpStats {
  wait: Log2Histogram;
  run: Log2Histogram;
}

export function decodeTpStats(b: Buffer): TpStats {
  const f = THREADPOOL_LAYOUTS.tp_stats.fields;
  return { wait: decodeHist(b, f.wait.offset), run: decodeHist(b, f.run.offset) };
}

export interface TpHealth {
  submitHits: number;
  queueHits: number;
  fsHits: number;
  dnsHits: number;
  jobHits: number;
  returnHits: number;
  unmatched: number;
  runningFull: number;
}

export function decodeTpHealth(b: Buffer, off = 0): TpHealth {
  const f = THREADPOOL_LAYOUTS.tp_health.fields;
  return {
    submitHits: u64(b, off + f.submit_hits.offset),
    queueHits: u64(b, off + f.queue_hits.offset),
    fsHits: u64(b, off + f.fs_hits.offset),
    dnsHits: u64(b, off + f.dns_hits.offset),
    jobHits: u64(b, off + f.job_hits.offset),
    returnHits: u64(b, off + f.return_hits.offset),
    unmatched: u64(b, off + f.unmatched.offset),
    runningFull: u64(b, off + f.running_full.offset),
  };
}

/** Mirrors bpf/files.h. */
export const FILE_PATH_LEN = 256;

export const FILES_LAYOUTS = {
  file_entry: {
    name: 'file_entry',
    size: 40 + FILE_PATH_LEN,
    fields: {
      gen: { offset: 0, type: 'u64' },
      read_bytes: { offset: 8, type: 'u64' },
      written_bytes: { offset: 16, type: 'u64' },
      fd: { offset: 24, type: 'u32' },
      sent: { offset: 28, type: 'u32' },
      file: { offset: 32, type: 'u64' },
      path: { offset: 40, type: 'bytes' },
    },
  },
  file_health: {
    name: 'file_health',
    size: 40,
    fields: {
      opens: { offset: 0, type: 'u64' },
      closes: { offset: 8, type: 'u64' },
      untracked: { offset: 16, type: 'u64' },
      events_dropped: { offset: 24, type: 'u64' },
      own_opens: { offset: 32, type: 'u64' },
    },
  },
} as const satisfies Record<string, StructLayout>;

export interface FileEntry {
  gen: bigint;
  readBytes: number;
  writtenBytes: number;
  fd: number;
  path: string;
}

export function decodeFileEntry(b: Buffer): FileEntry {
  const f = FILES_LAYOUTS.file_entry.fields;
  const raw = b.subarray(f.path.offset, f.path.offset + FILE_PATH_LEN);
  const end = raw.indexOf(0);
  return {
    gen: b.readBigUInt64LE(f.gen.offset),
    readBytes: u64(b, f.read_bytes.offset),
    writtenBytes: u64(b, f.written_bytes.offset),
    fd: b.readUInt32LE(f.fd.offset),
    path: raw.subarray(0, end < 0 ? raw.length : end).toString('utf8'),
  };
}

export function encodeFileEntry(e: FileEntry): Buffer {
  const f = FILES_LAYOUTS.file_entry.fields;
  const b = Buffer.alloc(FILES_LAYOUTS.file_entry.size);
  b.writeBigUInt64LE(e.gen, f.gen.offset);
  b.writeBigUInt64LE(BigInt(e.readBytes), f.read_bytes.offset);
  b.writeBigUInt64LE(BigInt(e.writtenBytes), f.written_bytes.offset);
  b.writeUInt32LE(e.fd, f.fd.offset);
  b.write(e.path.slice(0, FILE_PATH_LEN - 1), f.path.offset, 'utf8');
  return b;
}

export interface FileHealth {
  opens: number;
  closes: number;
  untracked: number;
  eventsDropped: number;
  /** Opens by the SDK's own code on the main thread, left untracked (src/own-io.ts). */
  ownOpens: number;
}

export function decodeFileHealth(b: Buffer, off = 0): FileHealth {
  const f = FILES_LAYOUTS.file_health.fields;
  return {
    opens: u64(b, off + f.opens.offset),
    closes: u64(b, off + f.closes.offset),
    untracked: u64(b, off + f.untracked.offset),
    eventsDropped: u64(b, off + f.events_dropped.offset),
    ownOpens: u64(b, off + f.own_opens.offset),
  };
}

/** One finished handshake (bpf/tls.h struct tls_event). */
export interface TlsEvent {
  durationNs: bigint;
  side: number;
  err: number;
}

export function decodeTlsEvent(b: Buffer): TlsEvent {
  const f = TLS_LAYOUTS.tls_event.fields;
  return { durationNs: b.readBigUInt64LE(f.duration_ns.offset), side: b.readUInt32LE(f.side.offset), err: b.readUInt32LE(f.err.offset) };
}

/** Mirrors bpf/spans.h. */
export const SPANS_DEFAULT_SLOTS = 4096;
/** A socket's slot: the top log2(slots) bits of (cookie * SPAN_SLOT_HASH) mod 2^64. */
export const SPAN_SLOT_HASH = 0x9e3779b97f4a7c15n;

export const SPAN_AFTER_SEND = 1;
export const SPAN_AFTER_RECV = 2;

export const SPANS_LAYOUTS = {
  span_slot: {
    name: 'span_slot',
    size: 64,
    fields: {
      key: { offset: 0, type: 'u64' },
      after: { offset: 8, type: 'u32' },
      state: { offset: 12, type: 'u32' },
      cookie: { offset: 16, type: 'u64' },
      bytes_sent: { offset: 24, type: 'u64' },
      bytes_retrans: { offset: 32, type: 'u64' },
      bytes_received: { offset: 40, type: 'u64' },
      notsent_bytes: { offset: 48, type: 'u32' },
      srtt_us: { offset: 52, type: 'u32' },
      total_retrans: { offset: 56, type: 'u32' },
      pad: { offset: 60, type: 'u32' },
    },
  },
} as const satisfies Record<string, StructLayout>;

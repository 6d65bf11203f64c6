/**
 * The kernel's own per-connection counters (TCP_INFO), read from user space on the process's own sockets. They
 * are exact, and reading them costs one getsockopt() per socket and nothing per packet: the sockets collector reads
 * every socket at collection time, the span processor reads one socket at span start and end. bpf/sockets.bpf.c
 * derives the same two byte counts from the same kernel fields when a socket is destroyed (tcp_counters()).
 */
import type { NativeAddon } from './native';

/** Slots of the Float64Array that the addon fills (native/tcp_info.h). */
export const TCP_INFO = {
  STATE: 0,
  BYTES_SENT: 1,
  BYTES_RETRANS: 2,
  BYTES_RECEIVED: 3,
  NOTSENT_BYTES: 4,
  SRTT_US: 5,
  TOTAL_RETRANS: 6,
  SEGS_OUT: 7,
  SEGS_IN: 8,
} as const;
export const TCP_INFO_SLOTS = 9;

/** Kernel TCP states (include/net/tcp_states.h). */
export const TCP_STATES = {
  ESTABLISHED: 1,
  SYN_SENT: 2,
  SYN_RECV: 3,
  FIN_WAIT1: 4,
  FIN_WAIT2: 5,
  TIME_WAIT: 6,
  CLOSE: 7,
  CLOSE_WAIT: 8,
  LAST_ACK: 9,
  LISTEN: 10,
  CLOSING: 11,
} as const;

/** A set of TCP states as a bit mask (the states are 1 to 12): a reading per span tests it, without a hash look-up. */
const states = (...list: number[]): number => list.reduce((mask, state) => mask | (1 << state), 0);
const isIn = (mask: number, state: number): boolean => ((mask >>> state) & 1) === 1;

/** States only reached after the peer's FIN arrived, which bytes_received counts as one byte. */
const FIN_RECEIVED = states(TCP_STATES.CLOSE_WAIT, TCP_STATES.LAST_ACK, TCP_STATES.CLOSING, TCP_STATES.TIME_WAIT);
/**
 * States in which our FIN is queued or sent. The FIN takes a sequence number: while it waits behind unsent data,
 * notsent_bytes (write_seq - snd_nxt) counts it as one byte; once it is sent, notsent_bytes is 0.
 */
const FIN_QUEUED = states(TCP_STATES.FIN_WAIT1, TCP_STATES.CLOSING, TCP_STATES.LAST_ACK);

export interface TcpCounters {
  state: number;
  /** Payload bytes the application wrote: transmitted once (retransmissions not counted again) or still queued. */
  txBytes: number;
  /** Payload bytes that arrived in order (the peer's FIN not counted). */
  rxBytes: number;
  /** Segments retransmitted. */
  retransmits: number;
  /** Smoothed RTT, µs; 0 before the first sample. */
  srttUs: number;
}

/** Payload bytes written and not yet transmitted: notsent_bytes less our FIN while it is queued. */
function notSent(state: number, notsent: number): number {
  return notsent > 0 && isIn(FIN_QUEUED, state) ? notsent - 1 : notsent;
}

/**
 * The application-level byte counts of a TCP_INFO reading, or undefined in TCP_CLOSE: there a received FIN cannot be
 * told from a reset, so only bpf/sockets.bpf.c (which sees the socket's flags) gives the final count.
 */
export function countersOf(info: Float64Array): TcpCounters | undefined {
  const state = info[TCP_INFO.STATE];
  if (state === TCP_STATES.CLOSE || state === TCP_STATES.LISTEN) return undefined;
  return {
    state,
    txBytes: info[TCP_INFO.BYTES_SENT] - info[TCP_INFO.BYTES_RETRANS] + notSent(state, info[TCP_INFO.NOTSENT_BYTES]),
    rxBytes: info[TCP_INFO.BYTES_RECEIVED] - (isIn(FIN_RECEIVED, state) && info[TCP_INFO.BYTES_RECEIVED] > 0 ? 1 : 0),
    retransmits: info[TCP_INFO.TOTAL_RETRANS],
    srttUs: info[TCP_INFO.SRTT_US],
  };
}

/**
 * A reader of the counters of the process's own sockets, by fd: undefined for an fd that is not a readable TCP
 * socket. One getsockopt per call, through the addon's shortest path (tcpInfoReader).
 */
export function tcpCountersReader(addon: NativeAddon): (fd: number) => TcpCounters | undefined {
  const scratch = new Float64Array(TCP_INFO_SLOTS);
  const read = addon.tcpInfoReader(scratch);
  return fd => (read(fd) === 0 ? countersOf(scratch) : undefined);
}

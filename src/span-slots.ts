/**
 * TCP_INFO without a system call, for the span processor (src/spans.ts): bpf/spans.bpf.c copies the counters of each
 * socket the processor follows into a slot of an array that this process maps into its memory, after the process's
 * sends and/or receives on it (SlotAfter). A reading is then a few loads, not a getsockopt (about 1.3 µs under load on the
 * project's VM, the largest part of a span's cost: docs/benchmark.md). A socket's slot is a hash of its cookie
 * (bpf/spans.h); this process claims it by writing the cookie into it, through a writable mapping of the array.
 *
 * A slot holds the counters as of the socket's last such call, which is when they last changed for a span's
 * purposes: the bytes the process wrote and read, and whatever arrived or was retransmitted before that. Readings
 * from a slot and from getsockopt can follow one another on the same socket: both come from the same kernel
 * counters, which only grow, and a slot is newer than the getsockopt that preceded its registration.
 *
 * Needs the sock_send_length and sock_recv_length tracepoints (Linux 6.3) and the privileges of the SDK's other
 * programs; without them {@link SpanSlots.open} says why and the processor reads with getsockopt, as before.
 */
import * as path from 'path';
import { SPAN_AFTER_RECV, SPAN_AFTER_SEND, SPAN_SLOT_HASH, SPANS_DEFAULT_SLOTS, SPANS_LAYOUTS } from './bpf-layout';
import type { Capabilities } from './capabilities';
import { BPF_OBJECT_DIR, BpfError, NativeAddon, NativeObject } from './native';
import { explain } from './probes';
import { setTarget, u32 } from './target';
import { TCP_INFO } from './tcpinfo';

export const SPANS_OBJECT = path.join(BPF_OBJECT_DIR, 'spans.bpf.o');

const F = SPANS_LAYOUTS.span_slot.fields;
/** A slot's fields as indices into a Uint32Array of the slots (the low word of a u64 field; its high word follows). */
const W = {
  SLOT: SPANS_LAYOUTS.span_slot.size / 4,
  KEY: F.key.offset / 4,
  AFTER: F.after.offset / 4,
  STATE: F.state.offset / 4,
  COOKIE: F.cookie.offset / 4,
  BYTES_SENT: F.bytes_sent.offset / 4,
  BYTES_RETRANS: F.bytes_retrans.offset / 4,
  BYTES_RECEIVED: F.bytes_received.offset / 4,
  NOTSENT: F.notsent_bytes.offset / 4,
  SRTT: F.srtt_us.offset / 4,
  TOTAL_RETRANS: F.total_retrans.offset / 4,
} as const;
const HI = 2 ** 32;
/** A slot's key as an index into a BigUint64Array of the slots: written as one 8-byte store. */
const KEY = { SLOT: SPANS_LAYOUTS.span_slot.size / 8, KEY: F.key.offset / 8 } as const;
const AFTER = { send: SPAN_AFTER_SEND, recv: SPAN_AFTER_RECV, both: SPAN_AFTER_SEND | SPAN_AFTER_RECV } as const;

/** Which calls of the process on a socket write its slot: the calls after which its spans' windows end. */
export type SlotAfter = 'send' | 'recv' | 'both';

/** A socket's place in the slots: its cookie (as two words, as the slot holds it) and its index. */
export interface SlotHandle {
  readonly index: number;
  readonly after: SlotAfter;
  readonly cookieLo: number;
  readonly cookieHi: number;
}

export class SpanSlots {
  private readonly words: Uint32Array;
  private readonly keys: BigUint64Array;
  /** 64 - log2(slots): a cookie's slot is the top bits of its hash (bpf/spans.h). */
  private readonly shift: bigint;
  private closed = false;
  /**
   * The programs attached so far: each when the first socket that needs it registers. A server's connections need
   * only the copy after a send; the program after receives then never runs (it would cost every receive on the
   * machine the process check, and every receive of this process a look-up).
   */
  private readonly attached = { send: false, recv: false };

  private constructor(
    private readonly addon: NativeAddon,
    private readonly obj: NativeObject,
    memory: ArrayBuffer,
    shift: number,
  ) {
    this.words = new Uint32Array(memory);
    this.keys = new BigUint64Array(memory);
    this.shift = BigInt(shift);
  }

  /**
   * Loads bpf/spans.bpf.o with `slots` slots (a power of two), and checks that this kernel can attach its programs
   * (the tracepoints are Linux 6.3+) by attaching one and detaching it; the reason as a string if this kernel or
   * process cannot.
   */
  static open(addon: NativeAddon, caps: Capabilities, objectPath = SPANS_OBJECT, slots = SPANS_DEFAULT_SLOTS): SpanSlots | string {
    if (!Number.isInteger(slots) || slots < 2 || slots > 2 ** 31 || (slots & (slots - 1)) !== 0) return `span slots: ${slots} is not a power of two from 2 to 2^31`;
    const shift = 64 - Math.log2(slots);
    let obj: NativeObject | undefined;
    try {
      obj = addon.open(objectPath);
      setTarget(obj, caps);
      obj.setGlobal('slot_shift', u32(shift));
      obj.setMaxEntries('span_slots', slots);
      obj.load();
      obj.attach('span_send').destroy();
      return new SpanSlots(addon, obj, obj.map('span_slots').memory(), shift);
    } catch (err) {
      obj?.close();
      if (err instanceof BpfError && err.step === 'attach' && err.code === 'ENOENT')
        return `this kernel has no sock_send_length tracepoint (Linux 6.3 and later have it): ${err.message}`;
      return explain('tracepoint', err, caps);
    }
  }

  /** The slot of the socket with this cookie, as bpf/spans.bpf.c finds it. */
  slotOf(cookie: number): number {
    return Number(BigInt.asUintN(64, BigInt(cookie) * SPAN_SLOT_HASH) >> this.shift);
  }

  /**
   * Follows the socket on `fd`: its slot is written after each of its sends (`after` 'send'), receives ('recv') or
   * both, from the next one on. Returns the slot, or undefined when another socket holds it (or the socket has no
   * cookie): the caller reads that socket with getsockopt. One system call (SO_COOKIE), once per socket.
   */
  register(fd: number, after: SlotAfter): SlotHandle | undefined {
    if (this.closed) return undefined;
    const cookie = this.addon.socketCookie(fd);
    if (cookie <= 0) return undefined;
    const index = this.slotOf(cookie);
    const key = index * KEY.SLOT + KEY.KEY;
    if (this.keys[key] !== 0n) return undefined;
    if (after !== 'recv') this.attach('send');
    if (after !== 'send') this.attach('recv');
    // `after` before the key: the program reads a slot only once its key is this socket's
    this.words[index * W.SLOT + W.AFTER] = AFTER[after];
    this.keys[key] = BigInt(cookie);
    return { index, after, cookieLo: cookie % HI, cookieHi: Math.floor(cookie / HI) };
  }

  private attach(op: 'send' | 'recv'): void {
    if (this.attached[op]) return;
    this.obj.attach(op === 'send' ? 'span_send' : 'span_recv');
    this.attached[op] = true;
  }

  /** The socket closed: its slot is free again. */
  release(handle: SlotHandle): void {
    const b = handle.index * W.SLOT;
    const mine = this.words[b + W.KEY] === handle.cookieLo && this.words[b + W.KEY + 1] === handle.cookieHi;
    // cleared with one 8-byte store: the program never sees half a key
    if (mine) this.keys[handle.index * KEY.SLOT + KEY.KEY] = 0n;
  }

  /**
   * Fills `out` (TCP_INFO_SLOTS doubles, as the addon's tcpInfoReader does) from the socket's slot; false when the
   * slot has nothing of this socket yet (no send or receive since register()). Call it from the thread whose event
   * loop owns the socket: the only thread whose system calls write its slot (bpf/spans.h).
   */
  read(handle: SlotHandle, out: Float64Array): boolean {
    if (this.closed) return false; // the programs are detached: the slots no longer move
    const w = this.words;
    const b = handle.index * W.SLOT;
    if (w[b + W.COOKIE] !== handle.cookieLo || w[b + W.COOKIE + 1] !== handle.cookieHi) return false;
    out[TCP_INFO.STATE] = w[b + W.STATE];
    out[TCP_INFO.BYTES_SENT] = w[b + W.BYTES_SENT] + w[b + W.BYTES_SENT + 1] * HI;
    out[TCP_INFO.BYTES_RETRANS] = w[b + W.BYTES_RETRANS] + w[b + W.BYTES_RETRANS + 1] * HI;
    out[TCP_INFO.BYTES_RECEIVED] = w[b + W.BYTES_RECEIVED] + w[b + W.BYTES_RECEIVED + 1] * HI;
    out[TCP_INFO.NOTSENT_BYTES] = w[b + W.NOTSENT];
    out[TCP_INFO.SRTT_US] = w[b + W.SRTT];
    out[TCP_INFO.TOTAL_RETRANS] = w[b + W.TOTAL_RETRANS];
    return true;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.obj.closeInBackground(); // detaching a tracepoint's program waits for an RCU grace period
  }
}

/**
 * Kernel-enriched spans: the kernel's view of the TCP connection that carried a span, put on the application's own
 * span (HTTP and gRPC, server and client; anything built on `net`) before it becomes read-only.
 *
 * The hook: SpanProcessor#onEnding(span), called by the SDK's Span.end() while the span is still writable (the
 * OpenTelemetry specification's OnEnding; @opentelemetry/sdk-trace-base 2.x, experimental there; tested with 2.12).
 * An SDK without it calls only onEnd, with a read-only span: the spans are then exported unchanged. HTTP server spans
 * need no hook: they get theirs when the response finished, while the span is still recording (the HTTP
 * instrumentation ends it at the response's 'close', a tick later).
 *
 * Which connection carried a span is never guessed: it comes from Node's own objects.
 *   - HTTP server spans: the `http.server.request.start` diagnostics channel gives the request and its socket just
 *     before Node emits 'request', inside which the HTTP instrumentation starts the SERVER span synchronously; the
 *     request is offered to the SERVER span started in that same synchronous dispatch only (same async execution id:
 *     a span started later, in another callback, never takes it). The span waits on the request for its response's
 *     `http.server.response.finish`. Once the HTTP instrumentation's `requestHook` (below) hands the processor a
 *     server request with its span, the hook does this and the channel is left.
 *   - HTTP client spans: the HTTP instrumentation's `requestHook(span, request)` gives the span's ClientRequest, and
 *     the request's 'socket' event its socket. `register` sets the hook; an application with its own
 *     HttpInstrumentation passes `processor.httpInstrumentationConfig()` (or calls `processor.requestHook`).
 *   - gRPC (@grpc/grpc-js with @opentelemetry/instrumentation-grpc): `processor.grpcInstrumentation()` tells this
 *     processor of each call inside its span, and the call's peer names its socket (src/grpc.ts). HTTP/2 carries
 *     concurrent calls on one connection: a span's window holds whatever crossed the connection meanwhile.
 *   - anything else: `processor.attachSocket(span, socket)`.
 *
 * What is read, per span:
 *   - TCP_INFO (getsockopt on the socket's own fd, no BPF, no privilege): bytes the application wrote and bytes
 *     that arrived, retransmitted segments, smoothed RTT. The span gets the difference between two readings, so a
 *     keep-alive connection's requests each get their own share. Window: a client span from the moment it got its
 *     socket (a reading then; zero for a connection it opened) to its end; a server span from the end of the
 *     previous request on the connection (zero for the first: the request's own bytes arrive before the span starts)
 *     to the moment the response finished (`http.server.response.finish`). One getsockopt per span, two for a
 *     client span on a reused connection.
 *   - a connection the client span opened: the TCP handshake as Node waited for it, from Node's connect(2) (the
 *     socket's 'connectionAttempt' event, the last one if it tried several addresses) to its 'connect' event; the
 *     DNS lookup of the connection's host name and its TLS handshake, measured by the uprobes of src/dns.ts and
 *     src/tls.ts. Both run on the main thread, and Node runs the JavaScript of a lookup or a handshake synchronously
 *     next to the uprobe that records it: the lookup's record is the newest one when the socket's 'lookup' event
 *     fires; the handshake's is the next one after the socket's 'secureConnect' event (Node emits it from inside
 *     OpenSSL's state machine, before the call that finished the handshake returns). Records are numbered, and a
 *     record is taken by its number, never by its time. A TLS socket built over a followed socket with
 *     tls.connect({ socket }) (grpc-js does) is reached through a wrapper of tls.connect: no channel announces it.
 *   - a name the client span resolved itself with dns.promises.lookup while it was active (grpc-js's resolver, once
 *     per channel, in the call that woke the channel): a wrapper of dns.promises.lookup takes the lookup's record,
 *     the newest when its promise settles.
 *
 * Only while the SDK's kernel telemetry sees the process's connections (its `tcp.bytes` measurement attached): without
 * privileges the spans are exported unchanged.
 *
 * Never throws into the application: a failure is said once and that span stays as it was.
 */
import { executionAsyncId } from 'async_hooks';
import * as dc from 'diagnostics_channel';
import { isMainThread } from 'worker_threads';
import { ClientRequest, IncomingMessage } from 'http';
import { Socket } from 'net';
// the module object itself (not an import-star copy): tls.connect is replaced on it
import tls = require('tls');
import dns = require('dns');
import { SpanKind, trace } from '@opentelemetry/api';
import type { Context } from '@opentelemetry/api';
import type { ReadableSpan, Span, SpanProcessor } from '@opentelemetry/sdk-trace-base';
import { TLS_ERR_NONE, TLS_SIDE_CLIENT } from './bpf-layout';
import type { DnsCollector } from './dns';
import { warnOnce } from './diag';
import { GrpcConnectionInstrumentation, http2StreamOf, PeerSockets } from './grpc';
import type { GrpcCallSink, PeerCall } from './grpc';
import { BpfError, loadAddon, NativeAddon } from './native';
import { observeCalls, observeResolutions } from './replace';
import { SPAN_ATTRS } from './semconv';
import { SlotAfter, SlotHandle, SpanSlots } from './span-slots';
import { countersOf, tcpCountersReader, TcpCounters, TCP_INFO_SLOTS } from './tcpinfo';
import type { TlsCollector } from './tls';
import { IN_WORKER, kernelSees, sources } from './active';
import { detectCapabilities } from './capabilities';
import type { SpansTcpInfo } from './config';

/** What an observer of a wrapped core function does when it fails: say it once; the call itself went through. */
const failed = (what: string) => (err: unknown) => warnOnce(`kernel-enriched spans: ${what}: ${(err as Error).message}`, `spans-${what}`);

const ZERO: TcpCounters = { state: 0, txBytes: 0, rxBytes: 0, retransmits: 0, srttUs: 0 };

/** What a client connection's setup left for the span that opened it. */
interface Setup {
  /** DNS records seen when the connection was first seen (before its own lookup could finish); -1: no DNS probe. */
  dnsSeq: number;
  dnsNs?: number;
  attemptAt?: bigint;
  connectNs?: number;
  /** TLS records seen at 'secureConnect': the handshake's record is the next one. */
  tlsSeq?: number;
  claimed: boolean;
  /** performance.now() when the socket was first seen: a gRPC call started before it may have opened it. */
  seenAt: number;
}

/** Per connection, on the socket object itself. */
interface Connection {
  /** TCP_INFO at the end of the last span on this connection (or of an untraced response after one). */
  last?: TcpCounters;
  /** When `last` was read (performance.now()). */
  lastAt?: number;
  setup?: Setup;
  /** gRPC server: the connection carried a call already, and TCP_INFO after the last call's stream closed. */
  grpcServed?: boolean;
  quiet?: TcpCounters;
  /** Its slot of the kernel's copies of TCP_INFO (src/span-slots.ts); null: asked for, none to be had. */
  slot?: SlotHandle | null;
}

interface SpanState {
  socket?: Socket;
  /** TCP_INFO at the start of the span's window; undefined until known (a client waiting for its socket). */
  base?: TcpCounters;
  /** The span opened its connection: it gets the connection's setup times. */
  setup?: Setup;
  /** A gRPC client call: its connection is known once it has one, at the latest at the span's end. */
  grpc?: { call: PeerCall; startedAt: number };
  /** A lookup the span made itself, by dns.promises.lookup while it was active (gRPC's resolver), in ns. */
  dnsNs?: number;
  /**
   * The last call on the connection before the span's end, for its slot (src/span-slots.ts): an HTTP client span
   * ends after it read its response ('recv'), a span of attachSocket() after either ('both'). gRPC spans read by
   * getsockopt (none): HTTP/2 interleaves calls, and a call's span does not end after a call of its own.
   */
  after?: SlotAfter;
}

type TrackedSocket = Socket & { _handle?: { fd?: number } | null };
/** The message of Node's `http.server.request.start` and `http.server.response.finish` channels (the part used). */
interface ServerMessage {
  request: IncomingMessage;
  socket: TrackedSocket;
}

/**
 * A processor's own property on Node's objects: its Connection on a socket, and on an HTTP request the SERVER span
 * that waits on it for its response (no state per server span). Each processor has its own symbols, so that two in
 * one process (two tracer providers) never share a connection's readings or a request.
 */
type Own<T> = Record<symbol, T | undefined>;

function fdOf(socket: TrackedSocket): number {
  const fd = socket._handle?.fd;
  return typeof fd === 'number' ? fd : -1;
}

/** A span's TCP_INFO attributes: its window from `base` to `end`; without a base (the window's start unknown), the RTT only. */
function putTcpAttributes(attrs: Record<string, number>, end: TcpCounters, base: TcpCounters | undefined): void {
  if (base) {
    attrs[SPAN_ATTRS.TCP_IO_TRANSMIT] = end.txBytes - base.txBytes;
    attrs[SPAN_ATTRS.TCP_IO_RECEIVE] = end.rxBytes - base.rxBytes;
    attrs[SPAN_ATTRS.TCP_RETRANSMITS] = end.retransmits - base.retransmits;
  }
  if (end.srttUs > 0) attrs[SPAN_ATTRS.TCP_RTT] = end.srttUs / 1e6;
}

function collector<T>(name: string): T | undefined {
  try {
    return sources?.collectorsByName().get(name) as T | undefined;
  } catch {
    return undefined;
  }
}

/** KernelSpanProcessor#reading. */
export interface TcpInfoReading {
  via: 'bpf' | 'getsockopt';
  reason?: string;
  /** Readings taken from a slot, without a system call. */
  fromSlots: number;
  /** Readings by getsockopt(TCP_INFO). */
  byGetsockopt: number;
}

export interface KernelSpanProcessorOptions {
  /** Put nothing on spans (the processor stays in place, inert). Default false. */
  disabled?: boolean;
  /**
   * How a connection's TCP_INFO is read: `bpf` (from the slots of bpf/spans.bpf.c where this kernel and process allow
   * them, getsockopt elsewhere; see `reading`) or `getsockopt` only (no program in the machine's sends and receives).
   * Default `bpf`.
   */
  tcpInfo?: SpansTcpInfo;
}

/** The subset of @opentelemetry/instrumentation-http's config this processor completes. */
export interface HttpHooksConfig {
  requestHook?: (span: Span | import('@opentelemetry/api').Span, request: ClientRequest | IncomingMessage) => void;
  [key: string]: unknown;
}

export class KernelSpanProcessor implements SpanProcessor {
  private readonly addon?: NativeAddon;
  private readonly readCounters?: (fd: number) => TcpCounters | undefined;
  /** The kernel's copies of TCP_INFO (src/span-slots.ts), read without a system call; see `reading`. */
  private readonly slots?: SpanSlots;
  private readonly slotScratch = new Float64Array(TCP_INFO_SLOTS);
  /**
   * How spans read TCP_INFO: from the slots that bpf/spans.bpf.c fills (`bpf`: Linux 6.3+, from the second span of a
   * connection on) or only by getsockopt (`getsockopt`, with the reason the slots are not there); and how many
   * readings each way took so far.
   */
  readonly reading: TcpInfoReading = { via: 'getsockopt', reason: 'the processor is disabled', fromSlots: 0, byGetsockopt: 0 };
  private readonly spans = new WeakMap<object, SpanState>();
  private readonly connectionKey = Symbol('otel-node-ebpf.connection');
  private readonly serverSpanKey = Symbol('otel-node-ebpf.server-span');
  /** The HTTP request being dispatched right now, and its socket (see the file's comment). */
  private pending?: ServerMessage;
  /** executionAsyncId() of the dispatch that offered `pending`: a cheap "same synchronous dispatch" test. */
  private pendingAsyncId = -1;
  /** The HTTP instrumentation calls requestHook with server requests: `pending` is not needed (see requestHook). */
  private serverSpansByHook = false;
  /** The newest DNS record a connection took: a record is taken once. */
  private dnsTaken = 0;
  private readonly subscriptions: [string, (message: unknown) => void][] = [];
  /** gRPC calls name their connection by peer address (src/grpc.ts); made when grpc-js loads. */
  private peers?: PeerSockets;
  /** Restores tls.connect (see tlsOver). */
  private undoTlsConnect?: () => void;
  /** Restores dns.promises.lookup (see lookupIn). */
  private undoPromisesLookup?: () => void;

  constructor(options: KernelSpanProcessorOptions = {}) {
    if (options.disabled) return;
    if (!isMainThread) {
      // as start() (see IN_WORKER): the slot map's close in the background is one of the addon's threads
      this.reading.reason = IN_WORKER;
      warnOnce(`kernel-enriched spans are off ${this.reading.reason}; the spans are exported unchanged`, 'spans-worker');
      return;
    }
    const addon = loadAddon();
    if (addon instanceof BpfError) {
      warnOnce(`kernel-enriched spans are off: ${addon.message}`, 'spans-addon');
      this.reading.reason = addon.message;
      return;
    }
    this.addon = addon;
    this.readCounters = tcpCountersReader(addon);
    // the running telemetry's capabilities (register starts it before tracing); detected here otherwise
    const slots = options.tcpInfo === 'getsockopt' ? "tcpInfo: 'getsockopt' was asked for (OTEL_NODE_EBPF_SPANS_TCP_INFO)" : SpanSlots.open(addon, sources?.caps ?? detectCapabilities());
    if (typeof slots === 'string') this.reading.reason = slots;
    else {
      this.slots = slots;
      this.reading.via = 'bpf';
      delete this.reading.reason;
    }
    this.subscribe('http.server.request.start', m => {
      const message = m as Partial<ServerMessage>;
      this.pending = message.request && message.socket ? (message as ServerMessage) : undefined;
      this.pendingAsyncId = executionAsyncId();
    });
    this.subscribe('http.server.response.finish', m => this.responseFinished(m as ServerMessage));
    // Sockets of net.connect() (plain HTTP clients): seen before connect() is called, so that none of their setup
    // events are missed. TLS sockets are seen at their request's 'socket' event.
    // The gRPC socket registry (once grpc-js loaded) follows the same sockets.
    this.subscribe('net.client.socket', m => {
      const socket = (m as { socket: Socket }).socket;
      this.trackSetup(socket);
      this.peers?.client(socket);
    });
    // TLS set up over a socket of net.connect() (grpc-js, database clients): the TLS socket is a second object,
    // which no channel announces; tls.connect's `socket` option ties it to the connection followed above.
    this.undoTlsConnect = observeCalls(tls, 'connect', (args, tlsSocket) => this.tlsOver(args, tlsSocket as tls.TLSSocket), failed('tls.connect'));
    // grpc-js resolves a channel's name with dns.promises.lookup and connects to the address: no socket 'lookup'
    // event. The lookup runs in the context of the call that woke the channel, so its span is the active one.
    this.undoPromisesLookup = observeResolutions(dns.promises, 'lookup', args => this.lookupIn(args[0]), failed('dns.promises.lookup'));
  }

  /** This processor's Connection on the socket, if it has one yet. */
  private connection(socket: Socket): Connection | undefined {
    return (socket as unknown as Own<Connection>)[this.connectionKey];
  }

  private connectionOf(socket: Socket): Connection {
    return ((socket as unknown as Own<Connection>)[this.connectionKey] ??= {});
  }

  /** The request, for the property of this processor that holds the SERVER span waiting on it (serverSpanKey). */
  private waiting(request: IncomingMessage): Own<Span> {
    return request as unknown as Own<Span>;
  }

  /**
   * A lookup made inside a client span that this processor follows: when it resolves, its record is the newest (the
   * promise's reactions run in the microtask checkpoint right after the getaddrinfo callback that the uprobe saw
   * finish), and this reaction runs before the caller's (observeResolutions).
   */
  private lookupIn(hostname: unknown): (() => void) | undefined {
    const span = trace.getActiveSpan() as unknown as Span | undefined;
    const state = span?.kind === SpanKind.CLIENT ? this.spans.get(span) : undefined;
    const seq = collector<DnsCollector>('dns')?.lookupLog().seq;
    if (typeof hostname !== 'string' || !state || seq === undefined) return undefined;
    return () => {
      if (state.dnsNs === undefined) state.dnsNs = this.takeLookup(seq, hostname);
    };
  }

  /**
   * The newest DNS record, in ns, if it is a successful lookup of `host` newer than record `seq` and not taken yet
   * (the caller knows it is the lookup it waited for: see the file's comment); a record is taken once.
   */
  private takeLookup(seq: number, host: string): number | undefined {
    const log = collector<DnsCollector>('dns')?.lookupLog();
    if (!log || log.seq <= seq || log.seq <= this.dnsTaken) return undefined;
    const e = log.at(log.seq);
    if (!e || e.status !== 0 || e.name !== host) return undefined;
    this.dnsTaken = log.seq;
    return Number(e.durationNs);
  }

  /** tls.connect(..., { socket }, ...) over a client socket whose setup is followed: its handshake is that connection's. */
  private tlsOver(args: unknown[], tlsSocket: tls.TLSSocket): void {
    const options = args.find((a): a is { socket?: unknown } => typeof a === 'object' && a !== null);
    const socket = options?.socket;
    if (!(socket instanceof Socket) || !(tlsSocket instanceof Socket)) return;
    const setup = this.connection(socket)?.setup;
    if (setup && !setup.claimed && setup.tlsSeq === undefined) this.onSecureConnect(tlsSocket, setup);
  }

  /** The connection's TLS handshake is the record after the one newest at 'secureConnect' (see the file's comment). */
  private onSecureConnect(tlsSocket: Socket, setup: Setup): void {
    tlsSocket.once(
      'secureConnect',
      this.guard('secureConnect', () => {
        const log = collector<TlsCollector>('tls')?.handshakeLog();
        if (log) setup.tlsSeq = log.seq;
      }),
    );
  }

  /**
   * `fn` as a listener of the application's objects (its sockets, streams, Node's channels): what it throws is warned
   * about once, never thrown into the application from an emit of its own.
   */
  private guard<A extends unknown[]>(what: string, fn: (...args: A) => void): (...args: A) => void {
    return (...args: A) => {
      try {
        fn(...args);
      } catch (err) {
        warnOnce(`kernel-enriched spans: ${what}: ${(err as Error).message}`, `spans-${what}`);
      }
    };
  }

  private subscribe(name: string, handler: (message: unknown) => void): void {
    const safe = this.guard(name, handler);
    dc.subscribe(name, safe);
    this.subscriptions.push([name, safe]);
  }

  private unsubscribe(name: string): void {
    const i = this.subscriptions.findIndex(([n]) => n === name);
    if (i < 0) return;
    dc.unsubscribe(name, this.subscriptions[i][1]);
    this.subscriptions.splice(i, 1);
  }

  /**
   * The socket's counters at the caller's moment, which comes right `after` a send or a receive of the process on it:
   * from the socket's slot when it has one written after such calls, else by getsockopt. A connection gets a slot
   * when it carries its second span (a keep-alive connection: the system call of SpanSlots.register() pays off from
   * its third span on) and its slot is free; a connection per request keeps one getsockopt per span, as does one
   * whose slot another connection holds. Without `after`, getsockopt.
   */
  private read(socket: TrackedSocket, after?: SlotAfter): TcpCounters | undefined {
    const c = this.connection(socket);
    const slot = c?.slot;
    if (slot && (slot.after === after || slot.after === 'both') && socket._handle && this.slots?.read(slot, this.slotScratch)) {
      this.reading.fromSlots++;
      return countersOf(this.slotScratch);
    }
    const fd = fdOf(socket);
    if (fd < 0 || !this.readCounters) return undefined;
    const counters = this.readCounters(fd);
    this.reading.byGetsockopt++;
    if (after && c && c.slot === undefined && c.last && this.slots) this.follow(socket, c, fd, after);
    return counters;
  }

  /** Gives the connection a slot, freed when its socket closes. */
  private follow(socket: TrackedSocket, c: Connection, fd: number, after: SlotAfter): void {
    c.slot = null;
    const slots = this.slots as SpanSlots;
    try {
      const handle = slots.register(fd, after);
      if (!handle) return;
      c.slot = handle;
      socket.once('close', () => {
        c.slot = null;
        slots.release(handle);
      });
    } catch (err) {
      warnOnce(`kernel-enriched spans: ${(err as Error).message}`, 'spans-register');
    }
  }

  /** Follows a client connection's setup: its lookup, connect and TLS handshake. Once per connection. */
  private trackSetup(socket: TrackedSocket): Setup {
    const c = this.connectionOf(socket);
    if (c.setup) return c.setup;
    const setup: Setup = { dnsSeq: collector<DnsCollector>('dns')?.lookupLog().seq ?? -1, claimed: false, seenAt: performance.now() };
    c.setup = setup;
    socket.on(
      'lookup',
      this.guard('lookup', (err: Error | null, _address: unknown, _family: unknown, host: string) => {
        // the lookup's own record is the newest: uv__getaddrinfo_done recorded it, then called this callback
        const ns = !err && setup.dnsSeq >= 0 ? this.takeLookup(setup.dnsSeq, host) : undefined;
        if (ns !== undefined) setup.dnsNs = ns;
      }),
    );
    socket.on('connectionAttempt', () => (setup.attemptAt = process.hrtime.bigint()));
    socket.once('connect', () => {
      if (setup.attemptAt !== undefined) setup.connectNs = Number(process.hrtime.bigint() - setup.attemptAt);
    });
    this.onSecureConnect(socket, setup);
    return setup;
  }

  private onClientSocket(state: SpanState, socket: Socket): void {
    state.socket = socket;
    if (socket.connecting) {
      state.base = ZERO;
      state.setup = this.trackSetup(socket);
    } else {
      state.base = this.read(socket, state.after);
    }
  }

  /**
   * Gives a span its connection, for spans that neither the diagnostics channels nor the HTTP instrumentation's hook
   * tie to a socket (a protocol of your own over `net`). A socket still connecting is a connection the span opened.
   */
  attachSocket(span: Span | import('@opentelemetry/api').Span, socket: Socket): void {
    if (!this.addon) return;
    try {
      const state: SpanState = { after: 'both' };
      this.spans.set(span, state);
      this.onClientSocket(state, socket);
    } catch (err) {
      warnOnce(`kernel-enriched spans: attachSocket: ${(err as Error).message}`, 'spans-attach');
    }
  }

  /**
   * @opentelemetry/instrumentation-http's requestHook: ties a client span to its ClientRequest (and a server span to
   * its request, which the diagnostics channel does already).
   */
  readonly requestHook = (span: Span | import('@opentelemetry/api').Span, request: ClientRequest | IncomingMessage): void => {
    if (!this.addon) return;
    try {
      if (request instanceof ClientRequest) {
        const state: SpanState = { after: 'recv' };
        this.spans.set(span, state);
        if (request.socket) this.onClientSocket(state, request.socket);
        else request.once('socket', this.guard('socket', (socket: Socket) => this.onClientSocket(state, socket)));
      } else if (request instanceof IncomingMessage) {
        if (kernelSees) this.waiting(request)[this.serverSpanKey] ??= span as Span;
        // The HTTP instrumentation hands this processor its server spans: `http.server.request.start` is needed no
        // more (Node then builds no message for it, and onStart has nothing to match).
        if (!this.serverSpansByHook) {
          this.serverSpansByHook = true;
          this.unsubscribe('http.server.request.start');
          this.pending = undefined;
        }
      }
    } catch (err) {
      warnOnce(`kernel-enriched spans: requestHook: ${(err as Error).message}`, 'spans-hook');
    }
  };

  /** The config of an HttpInstrumentation with this processor's requestHook (the application's own hook still runs). */
  httpInstrumentationConfig<T extends HttpHooksConfig>(config: T = {} as T): T {
    const own = config.requestHook;
    return {
      ...config,
      requestHook: (span, request) => {
        this.requestHook(span, request);
        own?.(span, request);
      },
    };
  }

  /**
   * For @grpc/grpc-js with @opentelemetry/instrumentation-grpc: register this with your instrumentations (before or
   * after GrpcInstrumentation; `register` does). It tells this processor which connection carried each call.
   */
  grpcInstrumentation(): GrpcConnectionInstrumentation {
    const spanOfCall = (kind: SpanKind): Span | undefined => {
      const span = trace.getActiveSpan() as Span | undefined;
      return span && span.kind === kind && !span.ended && !this.spans.has(span) ? span : undefined;
    };
    const sink: GrpcCallSink = {
      grpcLoaded: () => {
        if (this.addon) this.peers ??= new PeerSockets();
      },
      serverCall: call => {
        const span = spanOfCall(SpanKind.SERVER);
        const socket = span && (this.peers?.socketOf(call.getPeer()) as TrackedSocket | undefined);
        if (!socket || !kernelSees) return;
        // The request arrived before the handler ran, and the response leaves after the span ended: the window
        // starts where the previous call's stream closed on this connection (zero for the connection's first call).
        // Without that reading (the stream was not reachable) the span gets the RTT only.
        const c = this.connectionOf(socket);
        const base = c.grpcServed ? c.quiet : ZERO;
        c.grpcServed = true;
        c.quiet = undefined;
        this.spans.set(span, { socket, base });
        // The stream closes once its trailers are handed to the session; Node writes them to the socket within
        // the same turn of the loop. A reading in the next turn is where the next call's window starts.
        http2StreamOf(call)?.once('close', () => setImmediate(() => this.quiet(socket)));
      },
      clientCall: call => {
        const span = spanOfCall(SpanKind.CLIENT);
        if (span && this.peers && kernelSees) this.spans.set(span, { grpc: { call, startedAt: performance.now() } });
      },
    };
    return new GrpcConnectionInstrumentation(sink);
  }

  private quiet(socket: TrackedSocket): void {
    try {
      const reading = this.read(socket);
      if (reading) this.connectionOf(socket).quiet = reading;
    } catch (err) {
      warnOnce(`kernel-enriched spans: ${(err as Error).message}`, 'spans-quiet');
    }
  }

  /**
   * A gRPC client span's connection, found at its end through the call's peer. Its window: from the end of the
   * previous gRPC span on the connection, or from zero for a connection first seen after the span started that no
   * span claimed yet (the span opened it: it also gets the handshake time). A connection the SDK saw neither open
   * nor carry an earlier span gives the RTT only.
   */
  private grpcConnection(state: SpanState, grpc: NonNullable<SpanState['grpc']>): void {
    const socket = this.peers?.socketOf(grpc.call.getPeer()) as TrackedSocket | undefined;
    if (!socket) return;
    state.socket = socket;
    const c = this.connectionOf(socket);
    if (c.setup && !c.setup.claimed && c.setup.seenAt >= grpc.startedAt) {
      state.base = ZERO;
      state.setup = c.setup;
    } else if (c.lastAt === undefined || c.lastAt < grpc.startedAt) {
      state.base = c.last;
    }
    // else another call on the connection ended while this one ran: the reading at its end holds part of this
    // call's bytes, so the window is unknown and the span gets the RTT only
  }

  onStart(span: Span, _parentContext: Context): void {
    const pending = this.pending;
    if (!pending || span.kind !== SpanKind.SERVER || !kernelSees) return;
    this.pending = undefined;
    if (executionAsyncId() !== this.pendingAsyncId) return;
    this.waiting(pending.request)[this.serverSpanKey] = span;
  }

  /**
   * An HTTP server span gets its attributes when its response finished: its window ends there, and the span is still
   * recording (the HTTP instrumentation ends it at the response's 'close', a tick later). A span ended before (an
   * aborted response) gets nothing.
   */
  private responseFinished({ request, socket }: ServerMessage): void {
    const waiting = this.waiting(request);
    const span = waiting[this.serverSpanKey];
    waiting[this.serverSpanKey] = undefined;
    if (!span?.isRecording()) {
      // A response that no span of ours waits for (an ignored request, one the sampler dropped) on a connection
      // whose earlier response was traced: what it carried belongs to no span, and the next span's window starts
      // after it. (A connection none of whose responses was traced has no reading to move: one read per response
      // of every connection would be the cost of that.)
      const c = this.connection(socket);
      if (c?.last && kernelSees) this.moveLast(socket as TrackedSocket, c);
      return;
    }
    const end = this.read(socket, 'send');
    if (!end) return;
    const c = this.connectionOf(socket);
    const attrs: Record<string, number> = {};
    putTcpAttributes(attrs, end, c.last ?? ZERO);
    c.last = end;
    span.setAttributes(attrs);
  }

  private moveLast(socket: TrackedSocket, c: Connection): void {
    try {
      c.last = this.read(socket, 'send');
    } catch (err) {
      c.last = undefined;
      warnOnce(`kernel-enriched spans: ${(err as Error).message}`, 'spans-untraced');
    }
  }

  onEnding(span: Span): void {
    const state = this.spans.get(span);
    if (!state) return;
    this.spans.delete(span);
    try {
      this.enrich(span, state);
    } catch (err) {
      warnOnce(`kernel-enriched spans: ${(err as Error).message}`, 'spans-ending');
    }
  }

  private enrich(span: Span, state: SpanState): void {
    if (!kernelSees) return;
    if (state.grpc && !state.socket) this.grpcConnection(state, state.grpc);
    const socket = state.socket as TrackedSocket | undefined;
    if (!socket) return;
    const end = this.read(socket, state.after);
    const attrs: Record<string, number> = {};
    if (end) {
      putTcpAttributes(attrs, end, state.base);
      const c = this.connectionOf(socket);
      c.last = end;
      c.lastAt = performance.now();
    }
    if (state.dnsNs !== undefined) attrs[SPAN_ATTRS.DNS_LOOKUP_DURATION] = state.dnsNs / 1e9;
    const setup = state.setup;
    if (setup && !setup.claimed) {
      setup.claimed = true;
      if (setup.connectNs !== undefined) attrs[SPAN_ATTRS.TCP_CONNECT_DURATION] = setup.connectNs / 1e9;
      if (setup.dnsNs !== undefined) attrs[SPAN_ATTRS.DNS_LOOKUP_DURATION] = setup.dnsNs / 1e9;
      if (setup.tlsSeq !== undefined) {
        const e = collector<TlsCollector>('tls')?.handshakeLog().at(setup.tlsSeq + 1);
        if (e && e.side === TLS_SIDE_CLIENT && e.err === TLS_ERR_NONE) attrs[SPAN_ATTRS.TLS_HANDSHAKE_DURATION] = Number(e.durationNs) / 1e9;
      }
    }
    span.setAttributes(attrs); // one call: each setAttribute validates and counts on its own
  }

  onEnd(_span: ReadableSpan): void {}

  forceFlush(): Promise<void> {
    return Promise.resolve();
  }

  shutdown(): Promise<void> {
    this.slots?.close();
    for (const [name, handler] of this.subscriptions.splice(0)) dc.unsubscribe(name, handler);
    this.peers?.close();
    this.peers = undefined;
    this.undoTlsConnect?.();
    this.undoTlsConnect = undefined;
    this.undoPromisesLookup?.();
    this.undoPromisesLookup = undefined;
    return Promise.resolve();
  }
}

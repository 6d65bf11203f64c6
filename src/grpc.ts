/**
 * gRPC spans: which TCP connection carried a call of @grpc/grpc-js (1.10 and later; tested with 1.14), for the spans
 * that @opentelemetry/instrumentation-grpc makes. The instrumentation offers no hook that reaches a call's
 * connection, so this module wraps two public methods of grpc-js:
 *   - Server#register: the service handler it is given is wrapped before grpc-js stores it. Whatever wraps the stored
 *     handler later (instrumentation-grpc, registered before or after this), it runs around ours: inside our wrapper
 *     the call's SERVER span is started and active.
 *   - Channel#createCall: every client call of every kind creates its channel call here, synchronously, inside the
 *     context in which instrumentation-grpc made it active with its CLIENT span.
 * A call names its connection through grpc-js's public `getPeer()` ("address:port" of the other end), and the
 * connection is the one socket of this process with that peer: a socket registry keyed by peer, filled from Node's
 * `net.server.socket` and `net.client.socket` diagnostics channels. Two sockets with the same peer (two listeners of
 * this process reached from one client port) make the peer ambiguous: those calls get no attributes.
 * One internal of grpc-js is read: a server call's HTTP/2 stream (http2StreamOf), whose 'close' marks where the next
 * call's window starts; where it is not found, server spans after a connection's first get the RTT only.
 */
import * as dc from 'diagnostics_channel';
import type { Socket } from 'net';
import { InstrumentationBase, InstrumentationNodeModuleDefinition } from '@opentelemetry/instrumentation';
import { warnOnce } from './diag';
import { replace } from './replace';
import { VERSION } from './version';

/** What this module needs of a grpc-js call (server calls and channel calls alike). */
export interface PeerCall {
  getPeer(): string;
}

/** The span processor's side: what it is told of gRPC calls (src/spans.ts). */
export interface GrpcCallSink {
  /** A server handler runs for `call` inside its active SERVER span. */
  serverCall(call: PeerCall): void;
  /** A client call was created inside its active CLIENT span. */
  clientCall(call: PeerCall): void;
  /** grpc-js was loaded: start following sockets. */
  grpcLoaded(): void;
}

type Handler = (this: unknown, call: PeerCall, callback?: (...args: unknown[]) => unknown) => unknown;

/**
 * The HTTP/2 stream of a grpc-js server call, where grpc-js 1.10-1.14 keep it: the handler's call object holds the
 * server's intercepting call, whose chain (one link per server interceptor) ends at the call that owns the stream.
 * Not a public API: undefined if it is not there.
 */
export function http2StreamOf(call: unknown): import('http2').Http2Stream | undefined {
  let link = (call as { call?: unknown }).call as { stream?: unknown; nextCall?: unknown } | undefined;
  for (let depth = 0; link && depth < 32; depth++) {
    const stream = link.stream as { once?: unknown; session?: unknown } | undefined;
    if (stream && typeof stream.once === 'function' && 'session' in stream) return stream as import('http2').Http2Stream;
    link = link.nextCall as typeof link;
  }
  return undefined;
}

/** `call.getPeer()` → the registry's key: IPv6 addresses lose the brackets grpc-js puts around them on the client. */
export function peerKey(peer: string): string {
  return peer.startsWith('[') ? peer.replace(/^\[(.*)\](:\d+)$/, '$1$2') : peer;
}

/**
 * This process's TCP sockets by their peer address, while they are open. Only sockets opened or accepted after it
 * was created: grpc-js connects when its first call needs it and accepts after its handlers are registered, both
 * after grpc-js was loaded.
 */
export class PeerSockets {
  private readonly byPeer = new Map<string, Socket[]>();

  private readonly accepted = (message: unknown) => {
    try {
      this.add((message as { socket: Socket }).socket);
    } catch (err) {
      warnOnce(`kernel-enriched spans: net.server.socket: ${(err as Error).message}`, 'grpc-net.server.socket');
    }
  };

  constructor() {
    dc.subscribe('net.server.socket', this.accepted);
  }

  /**
   * A socket of net.connect(), from the `net.client.socket` message (which the span processor already follows):
   * published before connect() is called, its peer is known at 'connect'.
   */
  client(socket: Socket): void {
    socket.once('connect', () => this.add(socket));
  }

  private add(socket: Socket): void {
    const { remoteAddress, remotePort } = socket;
    if (!remoteAddress || !remotePort) return;
    const key = `${remoteAddress}:${remotePort}`;
    const sockets = this.byPeer.get(key);
    if (sockets) sockets.push(socket);
    else this.byPeer.set(key, [socket]);
    socket.once('close', () => {
      const left = this.byPeer.get(key)?.filter(s => s !== socket);
      if (left?.length) this.byPeer.set(key, left);
      else this.byPeer.delete(key);
    });
  }

  /** The one open socket whose peer is `peer` (grpc-js's getPeer() form); undefined if none or several. */
  socketOf(peer: string): Socket | undefined {
    const sockets = this.byPeer.get(peerKey(peer));
    return sockets?.length === 1 ? sockets[0] : undefined;
  }

  close(): void {
    dc.unsubscribe('net.server.socket', this.accepted);
    this.byPeer.clear();
  }
}

interface GrpcModule {
  Server: { prototype: { register: (...args: unknown[]) => unknown } };
  Channel: { prototype: { createCall: (...args: unknown[]) => PeerCall } };
}

const PATCHED = Symbol('otel-node-ebpf.grpc');

/** Tells a GrpcCallSink of every gRPC call (see the file's comment). Get one from KernelSpanProcessor#grpcInstrumentation(). */
export class GrpcConnectionInstrumentation extends InstrumentationBase {
  /** Our wrappers stay in place when something wrapped them since; they pass straight through while this is false. */
  private active = false;
  private undo: (() => void)[] = [];

  constructor(private readonly sink: GrpcCallSink) {
    super('otel-node-ebpf/grpc', VERSION, {});
  }

  protected init() {
    return [
      new InstrumentationNodeModuleDefinition(
        '@grpc/grpc-js',
        ['^1.10.0'],
        (grpc: GrpcModule) => {
          this.active = true;
          this.sink.grpcLoaded();
          if (this.undo.length === 0) {
            this.undo.push(
              replace(grpc.Server.prototype, 'register', original => this.patchRegister(original)),
              replace(grpc.Channel.prototype, 'createCall', original => this.patchCreateCall(original)),
            );
          }
          return grpc;
        },
        (grpc: GrpcModule) => {
          this.active = false;
          for (const undo of this.undo.splice(0)) undo();
          return grpc;
        },
      ),
    ];
  }

  private patchRegister(original: (...args: unknown[]) => unknown) {
    const instrumentation = this;
    const sink = this.sink;
    return function register(this: unknown, name: unknown, handler: unknown, ...rest: unknown[]) {
      if (!instrumentation.active || typeof handler !== 'function' || (handler as { [PATCHED]?: true })[PATCHED]) return original.call(this, name, handler, ...rest);
      const user = handler as Handler;
      const wrapped: Handler = function (this: unknown, call, callback) {
        if (!instrumentation.active) return user.call(this, call, callback);
        try {
          sink.serverCall(call);
        } catch (err) {
          warnOnce(`kernel-enriched spans: gRPC server call: ${(err as Error).message}`, 'grpc-server');
        }
        return user.call(this, call, callback);
      };
      Object.defineProperty(wrapped, PATCHED, { value: true });
      return original.call(this, name, wrapped, ...rest);
    };
  }

  private patchCreateCall(original: (...args: unknown[]) => PeerCall) {
    const instrumentation = this;
    const sink = this.sink;
    return function createCall(this: unknown, ...args: unknown[]) {
      const call = original.apply(this, args);
      if (!instrumentation.active) return call;
      try {
        sink.clientCall(call);
      } catch (err) {
        warnOnce(`kernel-enriched spans: gRPC client call: ${(err as Error).message}`, 'grpc-client');
      }
      return call;
    };
  }
}

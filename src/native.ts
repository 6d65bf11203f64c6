/**
 * The native addon (`native/`), typed. The addon is a thin wrapper over libbpf: objects, programs, links, maps and
 * ring buffers. It knows nothing about metrics. Every failure is a {@link BpfError} naming the step that failed.
 */
import * as path from 'path';

/** The steps a libbpf operation can fail in; `BpfError.step` is one of them. */
export type BpfStep =
  | 'addon'
  | 'open'
  | 'config'
  | 'load'
  | 'attach'
  | 'map'
  | 'ringbuf'
  | 'poll'
  | 'stats'
  | 'detach';

/** The one error class the addon throws. `errno` is positive (EPERM = 1); `log` holds libbpf's and the verifier's output for a failed load. */
export class BpfError extends Error {
  override name = 'BpfError';
  constructor(
    message: string,
    readonly step: BpfStep,
    readonly errno: number,
    readonly code: string,
    readonly log?: string,
  ) {
    super(message);
  }
}

export interface ProgramInfo {
  /** Function name in the object, e.g. `handle_send_raw_tp`. */
  name: string;
  /** ELF section, e.g. `raw_tp/sock_send_length`, `kprobe/tcp_sendmsg`, `fexit/tcp_sendmsg`, `uprobe`. */
  section: string;
  /** `bpf_prog_type` as libbpf names it: `kprobe`, `tracing`, `raw_tracepoint`, `tracepoint`, ... */
  type: string;
}

export interface MapInfo {
  name: string;
  /** `bpf_map_type` as libbpf names it: `hash`, `lru_hash`, `array`, `ringbuf`, ... */
  type: string;
  keySize: number;
  valueSize: number;
  maxEntries: number;
}

export interface ProgramStats {
  /** Kernel program id. */
  id: number;
  /** Nanoseconds spent running, while BPF run-time statistics were enabled. */
  runTimeNs: bigint;
  /** Runs counted while statistics were enabled. */
  runCount: bigint;
  /** Times the program was not run because another BPF program was running on the CPU (kernel >= 5.12, else 0). */
  recursionMisses: bigint;
}

export interface UprobeOptions {
  /** Path of the ELF file (the node binary or a shared library). */
  binary: string;
  /** Symbol to attach to; libbpf resolves it from `.symtab`/`.dynsym`. */
  symbol: string;
  /** Attach at return (uretprobe). Default false. */
  retprobe?: boolean;
  /** Only fire for this pid (-1: any). Default -1. */
  pid?: number;
  /** The symbol's file offset, if the caller resolved it (src/symbols.ts): libbpf then skips its own look-up. */
  offset?: number;
}

export interface NativeLink {
  /** Detaches. Idempotent. */
  destroy(): void;
}

export interface NativeMap {
  readonly name: string;
  readonly fd: number;
  readonly keySize: number;
  readonly valueSize: number;
  /** Returns the value (for per-CPU maps: all CPUs' values concatenated) or undefined if absent. */
  lookup(key: Buffer): Buffer | undefined;
  /** flags: 0 = BPF_ANY, 1 = BPF_NOEXIST, 2 = BPF_EXIST. */
  update(key: Buffer, value: Buffer, flags?: number): void;
  /** Returns false if the key was absent. */
  delete(key: Buffer): boolean;
  /** All keys, by bpf_map_get_next_key. */
  keys(): Buffer[];
  /** All entries as [key, value] pairs (keys, then a lookup each; entries removed meanwhile are skipped). */
  entries(): Array<[Buffer, Buffer]>;
  /**
   * The values of an array map made with BPF_F_MMAPABLE, mapped into this process, readable and writable:
   * max_entries values, each valueSize rounded up to 8 bytes. Reading or writing it is reading or writing the map,
   * no system call. The mapping outlives the object's close() (the programs no longer write it then) until the
   * buffer is collected.
   */
  memory(): ArrayBuffer;
}

export interface NativeRingBuffer {
  /** Consumes what is pending now, synchronously; returns the number of records. */
  consume(): number;
  /** Stops polling and frees the ring buffer. Idempotent. */
  close(): void;
}

export interface NativeObject {
  /** Path the object was opened from. */
  readonly path: string;
  programs(): ProgramInfo[];
  maps(): MapInfo[];
  /** Before load: writes a global variable of `.rodata`/`.data`/`.bss` (a `const volatile` in C). The size must match. */
  setGlobal(name: string, value: Buffer): void;
  /** Before load. */
  setMaxEntries(map: string, entries: number): void;
  /** Before load: whether this program is loaded at all. */
  setAutoload(program: string, autoload: boolean): void;
  /**
   * Before load: the uprobe program is loaded for uprobe_multi links (linux 6.6), which attachUprobe then makes (the
   * symbol's offset given) instead of uprobe perf events. A kernel without them refuses the link with EINVAL.
   */
  setUprobeMulti(program: string): void;
  /** Before load: every map of this object that `other` also has (same name) uses `other`'s map. `other` must be loaded. */
  reuseMapsFrom(other: NativeObject): void;
  /** Loads every autoloaded program and creates the maps. On failure, `BpfError.log` has the verifier log. */
  load(): void;
  /** Attaches by the program's section (kprobe/, kretprobe/, fentry/, fexit/, raw_tp/, tp/, ...). */
  attach(program: string): NativeLink;
  /** Attaches a program of type kprobe as a uprobe/uretprobe on a symbol of an ELF file. */
  attachUprobe(program: string, options: UprobeOptions): NativeLink;
  map(name: string): NativeMap;
  /** Run-time statistics of a loaded program, from bpf_prog_get_info_by_fd. */
  programStats(program: string): ProgramStats;
  /**
   * Polls the ring buffer map's epoll fd from the libuv loop (no thread, never blocks the loop). `onRecords` gets
   * the records of one wake-up, each a copy. The poll handle does not keep the process alive.
   */
  ringBuffer(map: string, onRecords: (records: Buffer[]) => void): NativeRingBuffer;
  /** Detaches every link, frees the ring buffers, closes the object. Idempotent. */
  close(): void;
  /**
   * close(), with the kernel-side teardown on a thread of the addon's own, one per link: returns at once. Detaching a
   * uprobe waits for RCU grace periods (about 110 ms each as a perf event here; uprobe_multi links wait concurrently);
   * a detach while the application runs must not stall its loop.
   */
  closeInBackground(): void;
}

export interface NativeAddon {
  /** Must be called once before anything else: the class the addon throws. */
  setErrorClass(ctor: typeof BpfError): void;
  /** options.btfCustomPath: libbpf's btf_custom_path, the BTF that CO-RE relocations are made against (default: the kernel's). */
  open(path: string, options?: { btfCustomPath?: string }): NativeObject;
  /**
   * BPF_ENABLE_STATS(BPF_STATS_RUN_TIME): run-time statistics stay on while the returned handle is open.
   * Needs CAP_SYS_ADMIN on most kernels; throws BpfError(step 'stats') otherwise.
   */
  enableStats(): { close(): void };
  /** Returns the free pages left in the heap after loading (libbpf's parsed kernel BTF) to the system (glibc malloc_trim). */
  trimMemory(): void;
  /** libbpf's version, e.g. "1.1". */
  libbpfVersion(): string;
  /** The epoll fd of the calling thread's event loop (uv_backend_fd), or -1. */
  loopBackendFd(): number;
  /** Whether the kernel supports this program type (libbpf_probe_bpf_prog_type), by libbpf name. */
  probeProgramType(type: string): boolean;
  /**
   * Calls the addon's exported no-op `otel_node_ebpf_calibrate` (or `otel_node_ebpf_calibrate_stepped`, whose first
   * instruction a uprobe must single-step) this many times and returns the elapsed nanoseconds: with a uprobe on it,
   * the cost of a uprobe hit (src/budget.ts).
   */
  calibrate(iterations: number, stepped?: boolean): number;
  /**
   * A function that fills `out` (TCP_INFO_SLOTS doubles, see src/tcpinfo.ts) with the TCP_INFO of one of the
   * process's own sockets, by fd, and returns 0 or -errno (not a TCP socket, closed, or a kernel older than 4.19). One
   * getsockopt() per call; needs no privilege. It resolves `out` once, here, instead of on every call (about 500 ns
   * less per call on this project's machine): the per-span path.
   */
  tcpInfoReader(out: Float64Array): (fd: number) => number;
  /** The socket's cookie (getsockopt SO_COOKIE, which gives the socket one if it had none), or -errno. */
  socketCookie(fd: number): number;
  /**
   * The local port of every TCP socket listening in the process's network namespace, whichever process holds it (one
   * entry per socket), from NETLINK_SOCK_DIAG; or -errno (no inet_diag in the kernel). Needs no privilege.
   */
  listeningTcpPorts(): number[] | number;
  /**
   * A function that returns the records (addresses and TCP_INFO) of the process's TCP sockets whose counters moved
   * since its previous pass (every TCP socket, listening ones included, the first time), and of every listening
   * socket: a collection's reading (native/tcp.cc). While an fd holds the same socket (its cookie), the function
   * returns the same record for it, `info` overwritten: a record is valid until the function's next call.
   */
  tcpSocketReader(): TcpSocketReader;
  /**
   * One HTTP/1.1 POST over plain TCP from a thread of the addon (native/http.cc): `head` is the request line and
   * headers without Content-Length and the empty line; `gzip` compresses the body there. Resolves with the status
   * code, Retry-After and the body of a 2xx answer (delimited by its length, its chunks or the connection's end);
   * rejects with a BpfError (step `http connect`, `http send`, ...; code ETIMEDOUT after `timeoutMs`). Holds the event
   * loop open until it settles.
   */
  httpPost(request: HttpPostRequest): Promise<HttpPostResult>;
  /**
   * The same request on the calling thread, blocking it until the answer or `timeoutMs` (without the body: the last
   * export of an exiting process does not wait for it); throws the BpfError.
   */
  httpPostSync(request: HttpPostRequest): HttpPostResult;
}

export interface HttpPostRequest {
  host: string;
  port: string;
  head: string;
  body: Uint8Array;
  gzip: boolean;
  timeoutMs: number;
}

export interface HttpPostResult {
  status: number;
  retryAfter?: string;
  /** The body of a 2xx answer, up to 64 KiB: an OTLP export response, whose partial success says what was rejected. */
  body?: Uint8Array;
}

/**
 * read() makes a whole pass over the process's fds; read(max) makes it in steps of `max` fds, one per call, and the
 * call after the last step returns null (the one after that starts a new pass).
 */
export interface TcpSocketReader {
  (): NativeTcpSocket[];
  (max: number): NativeTcpSocket[] | null;
}

export interface NativeTcpSocket {
  fd: number;
  family: 4 | 6;
  localAddress: string;
  localPort: number;
  /** Absent when the socket has no peer (listening, or not connected). */
  peerAddress?: string;
  peerPort?: number;
  /** TCP_INFO_SLOTS doubles, as tcpInfoReader() fills them. */
  info: Float64Array;
}

let cached: NativeAddon | BpfError | undefined;

/** Where the compiled addon and BPF objects live, relative to this file (dist/). */
export const PACKAGE_ROOT = path.resolve(__dirname, '..');
export const BPF_OBJECT_DIR = path.join(PACKAGE_ROOT, 'bpf', 'build');
export const ADDON_PATH = path.join(PACKAGE_ROOT, 'native', 'build', 'Release', 'otel_node_ebpf.node');

/**
 * What to do when the addon does not load. A shared library it links against is missing where the package was
 * installed without them (a slim container image): name it. Anything else (built for another node, a missing
 * build) needs a rebuild.
 */
function addonFix(message: string): string {
  const lib = /(lib[\w+-]+\.so[.\d]*): cannot open shared object file/.exec(message)?.[1];
  if (lib) {
    return `${lib} is missing: install libbpf, libelf and zlib (Debian, Ubuntu: apt-get install libbpf1 libelf1 zlib1g; Fedora, RHEL: dnf install libbpf elfutils-libelf zlib)`;
  }
  return 'rebuild it with "npm run build:native" in the package (needs a C++ compiler and the libbpf headers: apt-get install g++ make python3 libbpf-dev libelf-dev zlib1g-dev)';
}

/** Loads the addon once. Returns a BpfError (never throws) if it cannot be loaded. */
export function loadAddon(): NativeAddon | BpfError {
  if (cached) return cached;
  try {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    const addon = require(ADDON_PATH) as NativeAddon;
    addon.setErrorClass(BpfError);
    cached = addon;
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    cached = new BpfError(`the native addon could not be loaded (${e.message}); ${addonFix(e.message)}`, 'addon', 0, e.code ?? 'EADDON');
  }
  return cached;
}

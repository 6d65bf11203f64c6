/**
 * Every metric and attribute name this SDK emits. Names marked "semconv" follow the OpenTelemetry semantic
 * conventions (v1.38); names marked "ours" have no semantic-convention equivalent yet and are specific to this SDK.
 * These names are part of the public contract: README.md's metric table lists them.
 */

export const METRICS = {
  /** semconv: process.network.io, counter, By. */
  PROCESS_NETWORK_IO: 'process.network.io',
  /** ours: TCP connections that reached ESTABLISHED (opened or accepted by the process). */
  TCP_CONNECTION_OPENED: 'tcp.connection.opened',
  /** ours: connects that did not reach ESTABLISHED, with error.type. */
  TCP_CONNECTION_FAILED: 'tcp.connection.failed',
  /** ours: segments retransmitted (the kernel's tcp_sock.total_retrans). */
  TCP_RETRANSMITS: 'tcp.retransmits',
  /** ours: RST segments sent and received, with tcp.reset.direction. */
  TCP_RESETS: 'tcp.resets',
  /** ours: handshake time, histogram, s. */
  TCP_CONNECT_DURATION: 'tcp.connect.duration',
  /** ours: time from ESTABLISHED to CLOSE, histogram, s. */
  TCP_CONNECTION_DURATION: 'tcp.connection.duration',
  /** ours: smoothed RTT samples (tcp_sock.srtt_us), histogram, s. */
  TCP_RTT: 'tcp.rtt',

  /** semconv: nodejs.eventloop.time, counter, s, with nodejs.eventloop.state. Here from the kernel: epoll waits are idle. */
  NODEJS_EVENTLOOP_TIME: 'nodejs.eventloop.time',
  /** semconv: nodejs.eventloop.utilization, gauge, 1: active share since the previous export. */
  NODEJS_EVENTLOOP_UTILIZATION: 'nodejs.eventloop.utilization',
  /** ours: active stretches (epoll wait to epoll wait), histogram, s. */
  NODEJS_EVENTLOOP_ACTIVE_DURATION: 'nodejs.eventloop.active.duration',
  /** ours: main-thread time inside each syscall but the epoll waits, histogram, s, with syscall.name. */
  NODEJS_MAINTHREAD_SYSCALL_DURATION: 'nodejs.mainthread.syscall.duration',

  /** semconv: dns.lookup.duration, histogram, s, with dns.question.name and error.type on failure. */
  DNS_LOOKUP_DURATION: 'dns.lookup.duration',

  /** ours: TLS handshake time, from the first call of OpenSSL's handshake state machine to the one that finished it, histogram, s. */
  TLS_HANDSHAKE_DURATION: 'tls.handshake.duration',
  /** ours: plaintext bytes through SSL_read/SSL_write, counter, By, with network.io.direction (opt-in: tls.bytes). */
  TLS_IO: 'tls.io',

  /** ours: time libuv thread-pool work waited in the queue, submitted to picked up by a worker, histogram, s, with nodejs.threadpool.work.kind (opt-in: nodejs.threadpool). */
  NODEJS_THREADPOOL_WAIT_DURATION: 'nodejs.threadpool.wait.duration',
  /** ours: time libuv thread-pool work ran on a worker, histogram, s, with nodejs.threadpool.work.kind (opt-in: nodejs.threadpool). */
  NODEJS_THREADPOOL_RUN_DURATION: 'nodejs.threadpool.run.duration',

  /** ours: bytes the process read and wrote per file, counter, By, with file.path, file.directory, disk.io.direction (opt-in: file.io). */
  PROCESS_FILE_IO: 'process.file.io',

  /** ours, self-telemetry: 1 if the probe is attached, 0 if not; attributes otel_node_ebpf.probe and .hook. */
  SELF_PROBE_ATTACHED: 'otel_node_ebpf.probe.attached',
  /** ours, self-telemetry: kernel time spent in the probe's programs (BPF run-time statistics; estimated from windows when sampled), counter, s. */
  SELF_PROBE_KERNEL_TIME: 'otel_node_ebpf.probe.kernel.time',
  /** ours, self-telemetry: program runs, counter (BPF run-time statistics, estimated when sampled; uprobe measurements: hits, counted by the programs). */
  SELF_PROBE_RUNS: 'otel_node_ebpf.probe.runs',
  /** ours, self-telemetry: estimated CPU time of a uprobe measurement (hits x the cost of one hit measured at start), counter, s. */
  SELF_PROBE_CPU_TIME: 'otel_node_ebpf.probe.cpu.time',
  /** ours, self-telemetry: events the kernel could not record (a full map), counter, with otel_node_ebpf.drop.reason. */
  SELF_DROPPED: 'otel_node_ebpf.dropped',
} as const;

export const ATTRS = {
  /** semconv: transmit | receive. */
  NETWORK_IO_DIRECTION: 'network.io.direction',
  /** semconv: tcp. */
  NETWORK_TRANSPORT: 'network.transport',
  /** semconv: ipv4 | ipv6. */
  NETWORK_TYPE: 'network.type',
  /** semconv: the server side of the connection: the peer for connections the process opened; absent for accepted ones. */
  SERVER_ADDRESS: 'server.address',
  /** semconv: the server's port: the peer's for opened connections, the process's own listening port for accepted ones. */
  SERVER_PORT: 'server.port',
  /** semconv: low-cardinality error class; here the errno name (ECONNREFUSED, ETIMEDOUT, ...), as Node reports it. */
  ERROR_TYPE: 'error.type',
  /** ours: which side of the connection the process is: client (it connected) | server (it accepted). */
  TCP_CONNECTION_SIDE: 'tcp.connection.side',
  /** ours: sent | received. */
  TCP_RESET_DIRECTION: 'tcp.reset.direction',
  /** semconv (metrics SDK): the series that absorbs values once the kernel's series map is full. */
  OTEL_METRIC_OVERFLOW: 'otel.metric.overflow',

  /** semconv: active | idle. */
  NODEJS_EVENTLOOP_STATE: 'nodejs.eventloop.state',
  /** ours: the syscall's name (x86_64 table), `other` beyond the table. */
  SYSCALL_NAME: 'syscall.name',

  /** semconv: the name asked for, as the application passed it (bounded: beyond the limit, `_OTHER`). */
  DNS_QUESTION_NAME: 'dns.question.name',

  /** ours: which side of the TLS handshake the process is: client | server. */
  TLS_CONNECTION_SIDE: 'tls.connection.side',

  /** ours: fs | dns | crypto | zlib | user: what submitted the thread-pool work. */
  NODEJS_THREADPOOL_WORK_KIND: 'nodejs.threadpool.work.kind',

  /** semconv: the file's full path (bounded: beyond the limit only file.directory is set). */
  FILE_PATH: 'file.path',
  /** semconv: the directory of the file (bounded too: beyond the limit, `_OTHER`). */
  FILE_DIRECTORY: 'file.directory',
  /** semconv: read | write. */
  DISK_IO_DIRECTION: 'disk.io.direction',

  /** ours, self-telemetry: measurement name (tcp.bytes, tcp.state, ...). */
  SELF_PROBE: 'otel_node_ebpf.probe',
  /** ours, self-telemetry: kprobe | fentry | tracepoint | none. */
  SELF_HOOK: 'otel_node_ebpf.hook',
  /**
   * ours, self-telemetry: on otel_node_ebpf.probe.kernel.time and .runs (those from BPF run-time statistics) when
   * they are estimates: the share of the time the statistics were on (0.1: measured in windows of 10 % of the time,
   * scaled to the whole; OTEL_NODE_EBPF_KERNEL_STATS=sampled). Absent when measured all the time.
   */
  SELF_KERNEL_STATS_SAMPLED: 'otel_node_ebpf.kernel_stats.sampled',
  /** ours, self-telemetry: why the kernel dropped something. */
  SELF_DROP_REASON: 'otel_node_ebpf.drop.reason',
} as const;

/**
 * Attributes the span processor (src/spans.ts) puts on the application's own spans: the kernel's view of the
 * connection that carried the span, for the span's own window. Each shares its name, unit and meaning with the metric
 * of the same name (the two byte counts split process.network.io by direction); README "Kernel-enriched spans".
 */
export const SPAN_ATTRS = {
  /** ours: payload bytes the application wrote on the connection during the span (TCP_INFO), By. */
  TCP_IO_TRANSMIT: 'tcp.io.transmit',
  /** ours: payload bytes that arrived on the connection during the span (TCP_INFO; the peer's FIN not counted), By. */
  TCP_IO_RECEIVE: 'tcp.io.receive',
  /** ours: segments the connection retransmitted during the span (TCP_INFO total_retrans). */
  TCP_RETRANSMITS: METRICS.TCP_RETRANSMITS,
  /** ours: the connection's smoothed RTT at the end of the span (TCP_INFO tcpi_rtt), s. */
  TCP_RTT: METRICS.TCP_RTT,
  /** ours: a connection the span opened: connect(2) issued to Node's 'connect' event, s. */
  TCP_CONNECT_DURATION: METRICS.TCP_CONNECT_DURATION,
  /** semconv (as the metric): the span's connection resolved its host name: the lookup's duration (uprobes), s. */
  DNS_LOOKUP_DURATION: METRICS.DNS_LOOKUP_DURATION,
  /** ours: the span's connection did its TLS handshake during the span: its duration (uprobes), s. */
  TLS_HANDSHAKE_DURATION: METRICS.TLS_HANDSHAKE_DURATION,
} as const;

export const VALUES = {
  DIRECTION_TRANSMIT: 'transmit',
  DIRECTION_RECEIVE: 'receive',
  TRANSPORT_TCP: 'tcp',
  TYPE_IPV4: 'ipv4',
  TYPE_IPV6: 'ipv6',
  SIDE_CLIENT: 'client',
  SIDE_SERVER: 'server',
  RESET_SENT: 'sent',
  RESET_RECEIVED: 'received',
  EVENTLOOP_ACTIVE: 'active',
  EVENTLOOP_IDLE: 'idle',
  DISK_READ: 'read',
  DISK_WRITE: 'write',
  /** semconv: the value of a bounded attribute once its limit is reached. */
  OTHER: '_OTHER',
} as const;

/** Instrumentation scope of everything this SDK produces. */
export const SCOPE_NAME = 'otel-node-ebpf';

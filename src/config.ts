/**
 * Public configuration: the options of {@link start} and the environment variables they default from.
 * Every option has an environment variable; an explicit option wins over the environment. README.md's table lists
 * them all with their defaults.
 */

/** How a measurement attaches to the kernel. `auto` tries kprobe, then fentry, then tracepoints. */
export type AttachMode = 'auto' | 'kprobe' | 'fentry' | 'tracepoint';
export const ATTACH_MODES: readonly AttachMode[] = ['auto', 'kprobe', 'fentry', 'tracepoint'];

export type OtlpProtocol = 'grpc' | 'http/protobuf' | 'http/json';
export const OTLP_PROTOCOLS: readonly OtlpProtocol[] = ['grpc', 'http/protobuf', 'http/json'];

export type TemporalityPreference = 'cumulative' | 'delta' | 'lowmemory';
export const TEMPORALITY_PREFERENCES: readonly TemporalityPreference[] = ['cumulative', 'delta', 'lowmemory'];

export type HistogramAggregation = 'explicit_bucket_histogram' | 'base2_exponential_bucket_histogram';
export const HISTOGRAM_AGGREGATIONS: readonly HistogramAggregation[] = [
  'explicit_bucket_histogram',
  'base2_exponential_bucket_histogram',
];

/** OTEL_TRACES_EXPORTER values `register` acts on: `otlp` starts tracing, `none` (the default) does not. */
export type TracesExporter = 'none' | 'otlp';
export const TRACES_EXPORTERS: readonly TracesExporter[] = ['none', 'otlp'];

/** OTEL_METRICS_EXPORTER values: `otlp` (the default) exports the kernel metrics, `none` keeps only the probes
 * (for kernel-enriched spans, status(), or a pipeline of the application's own through createMetricProducer()). */
export type MetricsExporter = 'none' | 'otlp';
export const METRICS_EXPORTERS: readonly MetricsExporter[] = ['none', 'otlp'];
export type ExportThread = 'main' | 'worker' | 'native';
export const EXPORT_THREADS: readonly ExportThread[] = ['main', 'worker', 'native'];
/** How kernel-enriched spans read a connection's TCP_INFO (KernelSpanProcessorOptions.tcpInfo). */
export type SpansTcpInfo = 'bpf' | 'getsockopt';
export const SPANS_TCP_INFO: readonly SpansTcpInfo[] = ['bpf', 'getsockopt'];

/**
 * BPF run-time statistics (machine-wide while on): `sampled` turns them on in short windows and reports kernel time as
 * an estimate scaled from the windows, `always` keeps them on (exact), `off` never turns them on.
 */
export type KernelStatsMode = 'sampled' | 'always' | 'off';

export interface StartOptions {
  /** Do nothing at all. Env: `OTEL_SDK_DISABLED`. Default false. */
  disabled?: boolean;
  /** Env: `OTEL_SERVICE_NAME`; `OTEL_RESOURCE_ATTRIBUTES` adds more. Default: OpenTelemetry's `unknown_service:` and process.argv0. */
  serviceName?: string;
  /** OTLP protocol. Env: `OTEL_EXPORTER_OTLP_METRICS_PROTOCOL`, then `OTEL_EXPORTER_OTLP_PROTOCOL`. Default `http/protobuf`. */
  protocol?: OtlpProtocol;
  /**
   * Full metrics endpoint URL. Env: `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT` (used as is), or `OTEL_EXPORTER_OTLP_ENDPOINT`
   * (plus `/v1/metrics` for HTTP). Default `http://localhost:4318/v1/metrics` (HTTP) or `http://localhost:4317` (gRPC).
   * Headers, timeout and compression come from the standard `OTEL_EXPORTER_OTLP_*` variables, read by the exporter.
   */
  endpoint?: string;
  /** Env: `OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE`. Default `cumulative`. */
  temporality?: TemporalityPreference;
  /** How the kernel's histograms are exported. Env: `OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION`. Default `explicit_bucket_histogram`. */
  histogramAggregation?: HistogramAggregation;
  /** Milliseconds between exports. Env: `OTEL_METRIC_EXPORT_INTERVAL`. Default 60000. */
  exportIntervalMillis?: number;
  /** Milliseconds an export may take. Env: `OTEL_METRIC_EXPORT_TIMEOUT`. Default 30000. */
  exportTimeoutMillis?: number;
  /** Force one hook type for every measurement that has it (the others keep their own). Env: `OTEL_NODE_EBPF_ATTACH_MODE`. Default `auto`. */
  attachMode?: AttachMode;
  /** Measurements (or groups, such as `tcp`) to turn off. Env: `OTEL_NODE_EBPF_DISABLED_PROBES` (comma-separated). Default none. */
  disabledProbes?: string[];
  /** Connections tracked at once (kernel LRU map). Env: `OTEL_NODE_EBPF_MAX_CONNECTIONS`. Default 16384. */
  maxConnections?: number;
  /** Distinct series (peer address and port, or own listening port) kept by the kernel; more go to an overflow series. Env: `OTEL_NODE_EBPF_MAX_SERIES`. Default 1024. */
  maxSeries?: number;
  /** Opt-in measurements to turn on (costly ones, such as `tls.bytes`). Env: `OTEL_NODE_EBPF_ENABLED_PROBES` (comma-separated). Default none. */
  enabledProbes?: string[];
  /** Distinct `dns.question.name` values kept; more lookups go to `_OTHER`. Env: `OTEL_NODE_EBPF_DNS_MAX_NAMES`. Default 100. */
  dnsMaxNames?: number;
  /** Distinct `file.path` values kept (measurement `file.io`); later files count under their directory only, and directories beyond as many under `_OTHER`. Env: `OTEL_NODE_EBPF_FILE_MAX_PATHS`. Default 100. */
  fileMaxPaths?: number;
  /**
   * Estimated CPU time a uprobe measurement may cost, as a share of one CPU over a window (0.01 = 1 %); a measurement
   * over it is detached, with one warning. 0: not enforced. Env: `OTEL_NODE_EBPF_OVERHEAD_BUDGET`. Default 0.01.
   */
  overheadBudget?: number;
  /** Milliseconds of the window the budget is checked over. Env: `OTEL_NODE_EBPF_OVERHEAD_WINDOW`. Default 10000. */
  overheadWindowMillis?: number;
  /** Fail loudly: start() throws if any enabled measurement cannot attach. Env: `OTEL_NODE_EBPF_STRICT`. Default false. */
  strict?: boolean;
  /**
   * BPF run-time statistics (BPF_ENABLE_STATS), for the kernel time per probe and the kernel-timed budget. They are
   * machine-wide: every BPF program on the machine reads the clock twice per run while they are on. `sampled`: on for
   * `kernelStatsWindowMillis` of every `kernelStatsPeriodMillis`, kernel time and runs estimated from the windows;
   * `always` (or true): on all the time, exact; `off` (or false): never. Env: `OTEL_NODE_EBPF_KERNEL_STATS`
   * (`sampled`, `always`, `false`; `true` is `always`). Default `sampled`.
   */
  kernelStats?: KernelStatsMode | boolean;
  /** ms the statistics are on in each period (`sampled`). Env: `OTEL_NODE_EBPF_KERNEL_STATS_WINDOW`. Default 500. */
  kernelStatsWindowMillis?: number;
  /** ms of one sampling period (`sampled`). Env: `OTEL_NODE_EBPF_KERNEL_STATS_PERIOD`. Default 5000. */
  kernelStatsPeriodMillis?: number;
  /** Flush the last values on SIGTERM and SIGINT (the application's own reaction is kept). Default true. */
  flushOnSignals?: boolean;
  /**
   * `otlp`: start() also traces (HTTP and gRPC instrumentation, kernel-enriched spans, OTLP export). Env:
   * `OTEL_TRACES_EXPORTER`. Default `none`.
   */
  tracesExporter?: TracesExporter;
  /** `none`: start() exports no metrics (the probes still run). Env: `OTEL_METRICS_EXPORTER`. Default `otlp`. */
  metricsExporter?: MetricsExporter;
  /**
   * Where the metrics exporter sends: `native` (a thread of the addon; plain `http://` endpoints with http/protobuf
   * or http/json, `main` for the others), `main` (the application's thread, through Node's `http`) or `worker` (a
   * worker thread of the SDK's own; costs about 13 MB of memory). With `native` and `worker` the exporter's requests
   * never pass through the Node functions that the application's requests run. Env: `OTEL_NODE_EBPF_EXPORT_THREAD`.
   * Default `native`.
   */
  exportThread?: ExportThread;
  /**
   * With tracing on: put the kernel's attributes on the spans (KernelSpanProcessor). false: the spans are traced and
   * exported without them (the processor stays in place, inert). Env: `OTEL_NODE_EBPF_SPANS`. Default true.
   */
  spans?: boolean;
  /**
   * How kernel-enriched spans read a connection's TCP_INFO: `bpf` (from the second span of a keep-alive connection
   * on, from memory that a BPF program on the sock_send_length/sock_recv_length tracepoints fills, Linux 6.3+;
   * getsockopt elsewhere) or `getsockopt` (one system call per reading, and no program that runs in every send and
   * receive on the machine). Env: `OTEL_NODE_EBPF_SPANS_TCP_INFO`. Default `bpf`.
   */
  spansTcpInfo?: SpansTcpInfo;
  /** Env: `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`, then `OTEL_EXPORTER_OTLP_PROTOCOL`. Default `http/protobuf`. */
  tracesProtocol?: OtlpProtocol;
}

export interface ResolvedConfig {
  disabled: boolean;
  serviceName?: string;
  protocol: OtlpProtocol;
  endpoint?: string;
  temporality: TemporalityPreference;
  histogramAggregation: HistogramAggregation;
  exportIntervalMillis: number;
  exportTimeoutMillis: number;
  attachMode: AttachMode;
  disabledProbes: string[];
  maxConnections: number;
  maxSeries: number;
  enabledProbes: string[];
  dnsMaxNames: number;
  fileMaxPaths: number;
  overheadBudget: number;
  overheadWindowMillis: number;
  strict: boolean;
  kernelStats: KernelStatsMode;
  kernelStatsWindowMillis: number;
  kernelStatsPeriodMillis: number;
  flushOnSignals: boolean;
  tracesExporter: TracesExporter;
  metricsExporter: MetricsExporter;
  exportThread: ExportThread;
  spans: boolean;
  spansTcpInfo: SpansTcpInfo;
  tracesProtocol: OtlpProtocol;
}

export const DEFAULTS = {
  protocol: 'http/protobuf',
  temporality: 'cumulative',
  histogramAggregation: 'explicit_bucket_histogram',
  exportIntervalMillis: 60000,
  exportTimeoutMillis: 30000,
  attachMode: 'auto',
  maxConnections: 16384,
  maxSeries: 1024,
  dnsMaxNames: 100,
  fileMaxPaths: 100,
  overheadBudget: 0.01,
  overheadWindowMillis: 10000,
  kernelStats: 'sampled',
  // Each window's opening and closing patch the kernel's text and hold the thread that does it for 0.25-0.9 ms each
  // (docs/benchmark.md), so few long windows rather than many short ones; a period of 5 s still gives 12 windows per
  // default export interval and 2 per budget window.
  kernelStatsWindowMillis: 500,
  kernelStatsPeriodMillis: 5000,
} as const satisfies Partial<ResolvedConfig>;

type Env = Record<string, string | undefined>;

/** Reads one variable; a value that does not parse yields one warning naming the variable and the value used instead. */
class EnvReader {
  readonly warnings: string[] = [];
  /** Variables whose value was taken (not replaced by a default). */
  readonly parsed = new Set<string>();
  constructor(private readonly env: Env) {}

  raw(name: string): string | undefined {
    const v = this.env[name];
    return v === undefined || v.trim() === '' ? undefined : v.trim();
  }

  /**
   * A boolean of the specification's (OTEL_SDK_DISABLED): only `true` is true, in any case; a value other than `true`
   * and `false` is false, with a warning.
   */
  standardBool(name: string): boolean {
    const v = this.raw(name);
    if (v === undefined) return false;
    const l = v.toLowerCase();
    if (l === 'true') return true;
    if (l !== 'false') this.warnings.push(`${name}="${v}" is not true or false; using false`);
    return false;
  }

  /** One of the SDK's own booleans: `1` and `0` are accepted too. */
  bool(name: string, fallback: boolean): boolean {
    const v = this.raw(name);
    if (v === undefined) return fallback;
    const l = v.toLowerCase();
    if (l === 'true' || l === '1') return true;
    if (l === 'false' || l === '0') return false;
    this.warnings.push(`${name}="${v}" is not true or false; using ${fallback}`);
    return fallback;
  }

  /** Decimal digits only: Number() would also take `0x10`, `1e4` and `1.0`. */
  int(name: string, fallback: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
    const v = this.raw(name);
    if (v === undefined) return fallback;
    const n = /^\+?\d+$/.test(v) ? Number(v) : NaN;
    if (!Number.isSafeInteger(n) || n < min || n > max) {
      const range = max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `in [${min}, ${max}]`;
      this.warnings.push(`${name}="${v}" is not an integer ${range}; using ${fallback}`);
      return fallback;
    }
    this.parsed.add(name);
    return n;
  }

  number(name: string, fallback: number, min: number, max: number): number {
    const v = this.raw(name);
    if (v === undefined) return fallback;
    const n = Number(v);
    if (!Number.isFinite(n) || n < min || n > max) {
      this.warnings.push(`${name}="${v}" is not a number in [${min}, ${max}]; using ${fallback}`);
      return fallback;
    }
    return n;
  }

  /**
   * The first of `names` (a signal's own variable, then the general one) whose value is allowed; one that is set but
   * not allowed gives way to the next, with a warning that names the value used instead.
   */
  oneOf<T extends string>(names: string[], allowed: readonly T[], fallback: T): T {
    const refused: string[] = [];
    let chosen = fallback;
    for (const name of names) {
      const v = this.raw(name);
      if (v === undefined) continue;
      const l = v.toLowerCase() as T;
      if (allowed.includes(l)) {
        chosen = l;
        break;
      }
      refused.push(`${name}="${v}"`);
    }
    for (const r of refused) this.warnings.push(`${r} is not one of ${allowed.join(', ')}; using ${chosen}`);
    return chosen;
  }

  list(name: string): string[] {
    const v = this.raw(name);
    return v === undefined ? [] : v.split(',').map(s => s.trim()).filter(Boolean);
  }
}

/** Options, then environment, then defaults. Returns the warnings to log instead of logging them. */
export function resolveConfig(options: StartOptions = {}, env: Env = process.env): {
  config: ResolvedConfig;
  warnings: string[];
} {
  const r = new EnvReader(env);
  const checkedOption = <T>(name: keyof StartOptions, value: T | undefined, ok: (v: T) => boolean, fallback: T) => {
    if (value === undefined) return undefined;
    if (ok(value)) return value;
    r.warnings.push(`option ${String(name)}=${JSON.stringify(value)} is invalid; using ${JSON.stringify(fallback)}`);
    return fallback;
  };
  const positiveInt = (v: number) => Number.isInteger(v) && v > 0;

  const config: ResolvedConfig = {
    disabled: options.disabled ?? r.standardBool('OTEL_SDK_DISABLED'),
    serviceName: options.serviceName ?? r.raw('OTEL_SERVICE_NAME'),
    protocol:
      checkedOption('protocol', options.protocol, v => OTLP_PROTOCOLS.includes(v), DEFAULTS.protocol) ??
      r.oneOf(['OTEL_EXPORTER_OTLP_METRICS_PROTOCOL', 'OTEL_EXPORTER_OTLP_PROTOCOL'], OTLP_PROTOCOLS, DEFAULTS.protocol),
    endpoint: options.endpoint,
    temporality:
      checkedOption('temporality', options.temporality, v => TEMPORALITY_PREFERENCES.includes(v), DEFAULTS.temporality) ??
      r.oneOf(['OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE'], TEMPORALITY_PREFERENCES, DEFAULTS.temporality),
    histogramAggregation:
      checkedOption(
        'histogramAggregation',
        options.histogramAggregation,
        v => HISTOGRAM_AGGREGATIONS.includes(v),
        DEFAULTS.histogramAggregation,
      ) ??
      r.oneOf(
        ['OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION'],
        HISTOGRAM_AGGREGATIONS,
        DEFAULTS.histogramAggregation,
      ),
    exportIntervalMillis:
      checkedOption('exportIntervalMillis', options.exportIntervalMillis, positiveInt, DEFAULTS.exportIntervalMillis) ??
      r.int('OTEL_METRIC_EXPORT_INTERVAL', DEFAULTS.exportIntervalMillis, 1),
    exportTimeoutMillis:
      checkedOption('exportTimeoutMillis', options.exportTimeoutMillis, positiveInt, DEFAULTS.exportTimeoutMillis) ??
      r.int('OTEL_METRIC_EXPORT_TIMEOUT', DEFAULTS.exportTimeoutMillis, 1),
    attachMode:
      checkedOption('attachMode', options.attachMode, v => ATTACH_MODES.includes(v), DEFAULTS.attachMode) ??
      r.oneOf(['OTEL_NODE_EBPF_ATTACH_MODE'], ATTACH_MODES, DEFAULTS.attachMode),
    disabledProbes: options.disabledProbes ?? r.list('OTEL_NODE_EBPF_DISABLED_PROBES'),
    maxConnections:
      checkedOption('maxConnections', options.maxConnections, positiveInt, DEFAULTS.maxConnections) ??
      r.int('OTEL_NODE_EBPF_MAX_CONNECTIONS', DEFAULTS.maxConnections, 16, 1 << 24),
    maxSeries:
      checkedOption('maxSeries', options.maxSeries, positiveInt, DEFAULTS.maxSeries) ??
      r.int('OTEL_NODE_EBPF_MAX_SERIES', DEFAULTS.maxSeries, 1, 1 << 20),
    enabledProbes: options.enabledProbes ?? r.list('OTEL_NODE_EBPF_ENABLED_PROBES'),
    dnsMaxNames:
      checkedOption('dnsMaxNames', options.dnsMaxNames, positiveInt, DEFAULTS.dnsMaxNames) ??
      r.int('OTEL_NODE_EBPF_DNS_MAX_NAMES', DEFAULTS.dnsMaxNames, 1, 100000),
    fileMaxPaths:
      checkedOption('fileMaxPaths', options.fileMaxPaths, positiveInt, DEFAULTS.fileMaxPaths) ??
      r.int('OTEL_NODE_EBPF_FILE_MAX_PATHS', DEFAULTS.fileMaxPaths, 1, 100000),
    overheadBudget:
      checkedOption('overheadBudget', options.overheadBudget, v => Number.isFinite(v) && v >= 0 && v <= 1, DEFAULTS.overheadBudget) ??
      r.number('OTEL_NODE_EBPF_OVERHEAD_BUDGET', DEFAULTS.overheadBudget, 0, 1),
    overheadWindowMillis:
      checkedOption('overheadWindowMillis', options.overheadWindowMillis, v => Number.isInteger(v) && v >= 100, DEFAULTS.overheadWindowMillis) ??
      r.int('OTEL_NODE_EBPF_OVERHEAD_WINDOW', DEFAULTS.overheadWindowMillis, 100),
    strict: options.strict ?? r.bool('OTEL_NODE_EBPF_STRICT', false),
    kernelStats:
      kernelStatsMode(
        checkedOption('kernelStats', options.kernelStats, v => kernelStatsMode(v) !== undefined, DEFAULTS.kernelStats) ??
          r.oneOf(['OTEL_NODE_EBPF_KERNEL_STATS'], KERNEL_STATS_VALUES, DEFAULTS.kernelStats),
      )!,
    kernelStatsWindowMillis:
      checkedOption('kernelStatsWindowMillis', options.kernelStatsWindowMillis, v => Number.isInteger(v) && v >= 10, DEFAULTS.kernelStatsWindowMillis) ??
      r.int('OTEL_NODE_EBPF_KERNEL_STATS_WINDOW', DEFAULTS.kernelStatsWindowMillis, 10),
    kernelStatsPeriodMillis:
      checkedOption('kernelStatsPeriodMillis', options.kernelStatsPeriodMillis, v => Number.isInteger(v) && v >= 20, DEFAULTS.kernelStatsPeriodMillis) ??
      r.int('OTEL_NODE_EBPF_KERNEL_STATS_PERIOD', DEFAULTS.kernelStatsPeriodMillis, 20),
    flushOnSignals: options.flushOnSignals ?? true,
    tracesExporter:
      checkedOption('tracesExporter', options.tracesExporter, v => TRACES_EXPORTERS.includes(v), 'none') ??
      r.oneOf(['OTEL_TRACES_EXPORTER'], TRACES_EXPORTERS, 'none'),
    metricsExporter:
      checkedOption('metricsExporter', options.metricsExporter, v => METRICS_EXPORTERS.includes(v), 'otlp') ??
      r.oneOf(['OTEL_METRICS_EXPORTER'], METRICS_EXPORTERS, 'otlp'),
    exportThread:
      checkedOption('exportThread', options.exportThread, v => EXPORT_THREADS.includes(v), 'native') ??
      r.oneOf(['OTEL_NODE_EBPF_EXPORT_THREAD'], EXPORT_THREADS, 'native'),
    spans: options.spans ?? r.bool('OTEL_NODE_EBPF_SPANS', true),
    spansTcpInfo:
      checkedOption('spansTcpInfo', options.spansTcpInfo, v => SPANS_TCP_INFO.includes(v), 'bpf') ??
      r.oneOf(['OTEL_NODE_EBPF_SPANS_TCP_INFO'], SPANS_TCP_INFO, 'bpf'),
    tracesProtocol:
      checkedOption('tracesProtocol', options.tracesProtocol, v => OTLP_PROTOCOLS.includes(v), DEFAULTS.protocol) ??
      r.oneOf(['OTEL_EXPORTER_OTLP_TRACES_PROTOCOL', 'OTEL_EXPORTER_OTLP_PROTOCOL'], OTLP_PROTOCOLS, DEFAULTS.protocol),
  };
  if (config.exportTimeoutMillis > config.exportIntervalMillis) {
    // The metric reader requires timeout <= interval; only a timeout that was asked for (and not refused already)
    // deserves a warning.
    const asked = options.exportTimeoutMillis !== undefined ? positiveInt(options.exportTimeoutMillis) : r.parsed.has('OTEL_METRIC_EXPORT_TIMEOUT');
    if (asked)
      r.warnings.push(
      `OTEL_METRIC_EXPORT_TIMEOUT (${config.exportTimeoutMillis}) exceeds OTEL_METRIC_EXPORT_INTERVAL ` +
        `(${config.exportIntervalMillis}); using ${config.exportIntervalMillis}`,
    );
    config.exportTimeoutMillis = config.exportIntervalMillis;
  }
  const attributes = r.raw('OTEL_RESOURCE_ATTRIBUTES');
  const malformed = attributes === undefined ? undefined : resourceAttributesError(attributes);
  if (malformed) r.warnings.push(`OTEL_RESOURCE_ATTRIBUTES="${attributes}" ${malformed}; none of its attributes are used`);
  if (config.kernelStatsWindowMillis >= config.kernelStatsPeriodMillis) {
    r.warnings.push(
      `OTEL_NODE_EBPF_KERNEL_STATS_WINDOW (${config.kernelStatsWindowMillis}) is not shorter than ` +
        `OTEL_NODE_EBPF_KERNEL_STATS_PERIOD (${config.kernelStatsPeriodMillis}); using ` +
        `${DEFAULTS.kernelStatsWindowMillis} and ${DEFAULTS.kernelStatsPeriodMillis}`,
    );
    config.kernelStatsWindowMillis = DEFAULTS.kernelStatsWindowMillis;
    config.kernelStatsPeriodMillis = DEFAULTS.kernelStatsPeriodMillis;
  }
  // OTEL_EXPORTER_OTLP_PROTOCOL is read for metrics and for traces: a bad value is said once
  return { config, warnings: [...new Set(r.warnings)] };
}

/** OTEL_NODE_EBPF_KERNEL_STATS values: `false` is `off`; `true`, what it meant before `sampled` existed, is `always`. */
const KERNEL_STATS_VALUES = ['sampled', 'always', 'false', 'true'] as const;

function kernelStatsMode(v: KernelStatsMode | boolean | (typeof KERNEL_STATS_VALUES)[number] | undefined): KernelStatsMode | undefined {
  if (v === true || v === 'true' || v === 'always') return 'always';
  if (v === false || v === 'false' || v === 'off') return 'off';
  return v === 'sampled' ? 'sampled' : undefined;
}

/**
 * What is wrong with an OTEL_RESOURCE_ATTRIBUTES value, by the rules of OpenTelemetry's environment detector, which
 * then drops the whole value and says so only at debug level: `key=value` pairs separated by commas, `,` and `=`
 * percent-encoded inside keys and values, keys not empty, keys and values at most 255 characters once decoded.
 */
export function resourceAttributesError(value: string): string | undefined {
  for (const entry of value.split(',')) {
    if (entry.trim() === '') continue;
    const pair = entry.split('=');
    if (pair.length !== 2) return `has "${entry}", not key=value (a comma or "=" in a value is written %2C or %3D)`;
    const [key, val] = pair.map(p => p.trim());
    if (key === '') return `has "${entry}", whose key is empty`;
    let decoded: string[];
    try {
      decoded = [decodeURIComponent(key), decodeURIComponent(val)];
    } catch {
      return `has "${entry}", which is not percent-encoded correctly`;
    }
    if (decoded.some(d => d.length > 255)) return `has "${entry}", longer than 255 characters decoded`;
  }
  return undefined;
}

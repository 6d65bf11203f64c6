/**
 * The TLS collector: bpf/tls.bpf.c's handshake histograms (by side and outcome) and, opt-in, plaintext bytes.
 */
import * as path from 'path';
import type { Attributes } from '@opentelemetry/api';
import type { Capabilities } from './capabilities';
import type { Collector, KernelMetric, KernelPoint } from './collector';
import type { ResolvedConfig } from './config';
import {
  decodeHist,
  decodeTlsEvent,
  decodeTlsHealth,
  decodeTlsSeriesKey,
  TLS_ERR_ABORTED,
  TLS_ERR_ALERT,
  TLS_ERR_NONE,
  TLS_SIDE_CLIENT,
  TlsEvent,
  TlsHealth,
} from './bpf-layout';
import { EventLog } from './eventlog';
import type { UprobeHits } from './budget';
import { UprobeCollectorBase } from './uprobe-collector';
import { BPF_OBJECT_DIR, NativeAddon, NativeObject } from './native';
import { disabledReason, Measurement, ProbeSet, UprobeTarget } from './probes';
import { ATTRS, METRICS, VALUES } from './semconv';
import { declareSymbols, resolveSymbols } from './symbols';
import { setTarget } from './target';

export const TLS_OBJECT = path.join(BPF_OBJECT_DIR, 'tls.bpf.o');

const SYMBOLS = ['ossl_statem_connect', 'ossl_statem_accept', 'ossl_statem_fatal', 'SSL_free', 'SSL_read', 'SSL_write'] as const;
declareSymbols(SYMBOLS);

/** Uprobes on the OpenSSL inside the running node binary, resolved from it at start. */
export function tlsMeasurements(binary: string = process.execPath): Measurement[] {
  const symbols = resolveSymbols(binary, [...SYMBOLS]);
  const on = (program: string, symbol: (typeof SYMBOLS)[number], retprobe = false): UprobeTarget => ({
    program,
    binary,
    symbol,
    retprobe,
    resolved: symbols.get(symbol) ?? null,
  });
  return [
    {
      name: 'tls.handshake',
      description:
        "handshake time from OpenSSL's state machine: ossl_statem_connect/accept (entry and return), ossl_statem_fatal, SSL_free (about 9 uprobe hits per client handshake, 5 per server one)",
      variants: [
        {
          hook: 'uprobe',
          programs: ['hs_connect', 'hs_accept', 'hs_return', 'hs_fatal', 'hs_free'],
          uprobes: [
            on('hs_connect', 'ossl_statem_connect'),
            on('hs_accept', 'ossl_statem_accept'),
            on('hs_return', 'ossl_statem_connect', true),
            on('hs_return', 'ossl_statem_accept', true),
            on('hs_fatal', 'ossl_statem_fatal'),
            on('hs_free', 'SSL_free'),
          ],
        },
      ],
    },
    {
      name: 'tls.bytes',
      description: 'plaintext bytes: uretprobes on SSL_read and SSL_write, a hit per call (opt-in: OTEL_NODE_EBPF_ENABLED_PROBES=tls.bytes)',
      optIn: true,
      variants: [
        {
          hook: 'uprobe',
          programs: ['tls_read_return', 'tls_write_return'],
          uprobes: [on('tls_read_return', 'SSL_read', true), on('tls_write_return', 'SSL_write', true)],
        },
      ],
    },
  ];
}

/** TLS alert descriptions (RFC 8446 6.2, and the older ones of RFC 5246): the error.type of a failed handshake. */
const ALERTS: Record<number, string> = {
  0: 'close_notify',
  10: 'unexpected_message',
  20: 'bad_record_mac',
  21: 'decryption_failed',
  22: 'record_overflow',
  30: 'decompression_failure',
  40: 'handshake_failure',
  41: 'no_certificate',
  42: 'bad_certificate',
  43: 'unsupported_certificate',
  44: 'certificate_revoked',
  45: 'certificate_expired',
  46: 'certificate_unknown',
  47: 'illegal_parameter',
  48: 'unknown_ca',
  49: 'access_denied',
  50: 'decode_error',
  51: 'decrypt_error',
  60: 'export_restriction',
  70: 'protocol_version',
  71: 'insufficient_security',
  80: 'internal_error',
  86: 'inappropriate_fallback',
  90: 'user_canceled',
  100: 'no_renegotiation',
  109: 'missing_extension',
  110: 'unsupported_extension',
  111: 'certificate_unobtainable',
  112: 'unrecognized_name',
  113: 'bad_certificate_status_response',
  114: 'bad_certificate_hash_value',
  115: 'unknown_psk_identity',
  116: 'certificate_required',
  120: 'no_application_protocol',
};

/** error.type of a failed handshake: the TLS alert's name (sent or received), `aborted`, or `tls_error`. */
export function tlsErrorType(err: number): string {
  if (err === TLS_ERR_ABORTED) return 'aborted';
  if (err >= TLS_ERR_ALERT) return ALERTS[err - TLS_ERR_ALERT] ?? `alert_${err - TLS_ERR_ALERT}`;
  return 'tls_error';
}

export class TlsCollector extends UprobeCollectorBase implements Collector {
  readonly name = 'tls';
  private readonly measurements: Measurement[];
  /** The last finished handshakes, numbered (src/spans.ts takes the one a connection's own handshake produced). */
  readonly recent = new EventLog<TlsEvent>();

  constructor(
    private readonly addon: NativeAddon,
    private readonly config: ResolvedConfig,
    private readonly caps: Capabilities,
    private readonly objectPath: string = TLS_OBJECT,
    binary: string = process.execPath,
  ) {
    super();
    this.measurements = tlsMeasurements(binary);
  }

  private readonly configure = (obj: NativeObject): void => setTarget(obj, this.caps);

  createProbeSet(): ProbeSet {
    return new ProbeSet(this.addon, this.objectPath, this.measurements, this.configure, this.caps);
  }

  start(): void {
    const probes = this.createProbeSet();
    this.probes = probes;
    try {
      this.ring = probes.baseObject().ringBuffer('tls_events', records => {
        if (!this.detachedCounts.has('tls.handshake')) for (const r of records) this.recent.push(decodeTlsEvent(r));
      });
      probes.attach(this.config.attachMode, name => disabledReason(this.config, name, this.measurements.find(m => m.name === name)?.optIn));
    } catch (err) {
      this.stop();
      throw err;
    }
  }

  health(): TlsHealth | undefined {
    const v = this.probes?.bss();
    return v ? decodeTlsHealth(v) : undefined;
  }

  dropped(): [string, number][] {
    const h = this.health();
    return h ? [
      ['tls_ring_buffer_full', h.eventsDropped],
      ['tls_series_map_full', h.seriesOverflow],
    ] : [];
  }

  protected countedHits(): Map<string, UprobeHits[]> {
    const h = this.health();
    if (!h) return new Map();
    const emulated = (symbol: string) =>
      this.measurements.flatMap(m => m.variants[0].uprobes ?? []).find(u => u.symbol === symbol)?.resolved?.emulated ?? false;
    return new Map([
      [
        'tls.handshake',
        [
          { hits: h.connectHits, emulated: emulated('ossl_statem_connect') },
          { hits: h.acceptHits, emulated: emulated('ossl_statem_accept') },
          // both functions' returns; their entry breakpoints are the two above
          { hits: h.returnHits, emulated: emulated('ossl_statem_connect'), retprobe: true, sharesEntry: true },
          { hits: h.fatalHits, emulated: emulated('ossl_statem_fatal') },
          { hits: h.freeHits, emulated: emulated('SSL_free') },
        ],
      ],
      [
        'tls.bytes',
        [
          { hits: h.readHits, emulated: emulated('SSL_read'), retprobe: true },
          { hits: h.writeHits, emulated: emulated('SSL_write'), retprobe: true },
        ],
      ],
    ]);
  }

  collect(): KernelMetric[] {
    if (!this.probes) return [];
    const handshakes: KernelPoint[] = [];
    for (const [k, v] of this.probes.map('series').entries()) {
      const key = decodeTlsSeriesKey(k);
      const attributes: Attributes = {
        [ATTRS.TLS_CONNECTION_SIDE]: key.side === TLS_SIDE_CLIENT ? VALUES.SIDE_CLIENT : VALUES.SIDE_SERVER,
      };
      if (key.err !== TLS_ERR_NONE) attributes[ATTRS.ERROR_TYPE] = tlsErrorType(key.err);
      handshakes.push({ attributes, hist: decodeHist(v, 0) });
    }
    const io: KernelPoint[] = [];
    const h = this.health();
    if (h && this.status().some(p => p.name === 'tls.bytes' && (p.attached || p.reason?.startsWith('detached')))) {
      io.push({ attributes: { [ATTRS.NETWORK_IO_DIRECTION]: VALUES.DIRECTION_TRANSMIT }, value: h.txBytes });
      io.push({ attributes: { [ATTRS.NETWORK_IO_DIRECTION]: VALUES.DIRECTION_RECEIVE }, value: h.rxBytes });
    }
    return [
      { name: METRICS.TLS_HANDSHAKE_DURATION, unit: 's', description: 'TLS handshake time (OpenSSL state machine), by side and outcome.', kind: 'histogram', points: handshakes },
      { name: METRICS.TLS_IO, unit: 'By', description: 'Plaintext bytes through SSL_read and SSL_write.', kind: 'counter', points: io },
    ];
  }

  /** The finished handshakes, after taking what the ring buffer holds now. */
  handshakeLog(): EventLog<TlsEvent> {
    this.ring?.consume();
    return this.recent;
  }
}

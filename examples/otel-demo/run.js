#!/usr/bin/env node
'use strict';
// End-to-end demo (`npm run demo`): a payment service runs with the SDK preloaded, a load generator calls it, and
// the SDK's OTLP metrics land in a receiver that prints what arrived. Exits 1 if no kernel metrics arrived.
//
// Environment:
//   OTEL_EXPORTER_OTLP_ENDPOINT  send to your own collector instead of the built-in receiver (nothing is printed then)
//   OTEL_EXPORTER_OTLP_PROTOCOL  http/protobuf (default), http/json or grpc
//   OTEL_METRIC_EXPORT_INTERVAL  ms between exports (default here 2000)
//   OTEL_NODE_EBPF_STRICT        default here true: the service fails at start if the probes cannot attach
//   DEMO_DURATION, DEMO_RATE     load: seconds (default 20) and calls per second (default 50)
//   PORT                         the payment service's port (default 50051; 0 picks a free one)

const fs = require('node:fs');
const path = require('node:path');
const readline = require('node:readline');
const { spawn } = require('node:child_process');

const ROOT = path.resolve(__dirname, '../..');
const REGISTER = path.join(ROOT, 'dist', 'register.js');
const PROTOCOLS = ['http/protobuf', 'http/json', 'grpc'];

function fail(message) {
  console.error(`\ndemo failed: ${message}`);
  process.exit(1);
}

/** Spawns node with the given args; its output lines are shown with a prefix and emitted as 'line' events. */
function start(label, args, env) {
  const child = spawn(process.execPath, args, { cwd: __dirname, env, stdio: ['ignore', 'pipe', 'pipe'] });
  child.lines = [];
  for (const stream of [child.stdout, child.stderr]) {
    readline.createInterface({ input: stream }).on('line', (line) => {
      child.lines.push(line);
      console.log(`  [${label}] ${line}`);
      child.emit('line', line);
    });
  }
  // 'close' comes after the process exited and its output was read to the end.
  child.exited = new Promise((resolve) => child.on('close', (code, signal) => resolve({ code, signal })));
  return child;
}

/** Resolves with the match of the first output line matching re; rejects if the process ends first or on timeout. */
function waitForLine(child, re, timeoutMs) {
  return new Promise((resolve, reject) => {
    const found = child.lines.find((l) => re.test(l));
    if (found) return resolve(found.match(re));
    let settled = false;
    const done = (f) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      child.off('line', onLine);
      f();
    };
    const onLine = (line) => {
      const m = line.match(re);
      if (m) done(() => resolve(m));
    };
    const timer = setTimeout(
      () => done(() => reject(new Error(`printed no "${re.source}" within ${timeoutMs} ms`))),
      timeoutMs,
    );
    child.on('line', onLine);
    child.exited.then(({ code, signal }) => done(() => reject(new Error(`exited (${signal || `code ${code}`})`))));
  });
}

async function stopService(service) {
  service.kill('SIGTERM');
  const timer = setTimeout(() => {
    console.error('  the service did not exit 15 s after SIGTERM; killing it');
    service.kill('SIGKILL');
  }, 15_000);
  const result = await service.exited;
  clearTimeout(timer);
  return result;
}

async function main() {
  if (!fs.existsSync(REGISTER)) {
    fail(`${path.relative(process.cwd(), REGISTER)} not found: build the SDK first (npm run build).`);
  }
  const { OtlpReceiver } = require(path.join(ROOT, 'dist', 'otlp', 'receiver.js'));
  const { summarize } = require(path.join(ROOT, 'dist', 'otlp', 'summary.js'));
  const { METRICS } = require(path.join(ROOT, 'dist', 'semconv.js'));

  const protocol = process.env.OTEL_EXPORTER_OTLP_PROTOCOL || 'http/protobuf';
  if (!PROTOCOLS.includes(protocol))
    fail(`OTEL_EXPORTER_OTLP_PROTOCOL=${protocol}; use one of ${PROTOCOLS.join(', ')}`);
  const duration = Number(process.env.DEMO_DURATION || 20);
  const rate = Number(process.env.DEMO_RATE || 50);
  if (!(duration > 0) || !(rate > 0)) fail('DEMO_DURATION and DEMO_RATE must be positive numbers');

  let endpoint = process.env.OTEL_EXPORTER_OTLP_ENDPOINT;
  const external = Boolean(endpoint);
  let receiver;
  if (!external) {
    receiver = new OtlpReceiver();
    const addr = await receiver.start();
    endpoint = protocol === 'grpc' ? addr.grpcEndpoint : addr.httpEndpoint;
  }

  const env = {
    ...process.env,
    OTEL_SERVICE_NAME: process.env.OTEL_SERVICE_NAME || 'payment',
    OTEL_EXPORTER_OTLP_ENDPOINT: endpoint,
    OTEL_EXPORTER_OTLP_PROTOCOL: protocol,
    OTEL_METRIC_EXPORT_INTERVAL: process.env.OTEL_METRIC_EXPORT_INTERVAL || '2000',
    OTEL_NODE_EBPF_STRICT: process.env.OTEL_NODE_EBPF_STRICT || 'true',
    // the service's gRPC spans, with what the kernel saw of each call's connection
    OTEL_TRACES_EXPORTER: process.env.OTEL_TRACES_EXPORTER || 'otlp',
    PORT: process.env.PORT || '50051',
  };

  console.log('otel-node-ebpf demo');
  console.log(`  1. a gRPC payment service starts with the SDK preloaded (node --require otel-node-ebpf/register);`);
  console.log(`     the SDK measures the service's own TCP sockets in the kernel (eBPF) and exports OTLP metrics`);
  console.log(
    `     every ${env.OTEL_METRIC_EXPORT_INTERVAL} ms to ${endpoint} (${protocol}` +
      `${external ? '' : ', a receiver built into this demo'})`,
  );
  console.log(`  2. a separate load generator calls it ${rate} times a second for ${duration} s (10% bad cards)`);
  console.log(
    `  3. the service is stopped (SIGTERM: the SDK exports a last time) and the metrics received are summarized,`,
  );
  console.log(`     with one of its gRPC server spans and the kernel attributes the SDK put on it`);
  console.log('');

  const service = start('payment', ['--require', REGISTER, path.join(__dirname, 'payment-service.js')], env);
  let load;
  const interrupt = () => {
    for (const child of [service, load]) if (child && child.exitCode === null) child.kill('SIGTERM');
    process.exit(130);
  };
  process.once('SIGINT', interrupt);

  let target;
  try {
    const [, host, port] = await waitForLine(service, /listening on (\S+):(\d+)/, 20_000);
    target = `${host}:${port}`;
  } catch (err) {
    if (service.exitCode === null) service.kill('SIGKILL');
    if (receiver) await receiver.stop();
    fail(
      `the payment service did not start: it ${err.message}. Its output is above. ` +
        `If the SDK could not load its eBPF probes, \`npm run doctor\` says what is missing ` +
        `(usually root or CAP_BPF+CAP_PERFMON, and a kernel with BTF).`,
    );
  }

  load = start('load', [path.join(__dirname, 'load-generator.js')], {
    ...process.env,
    TARGET: target,
    RATE: String(rate),
    DURATION: String(duration),
  });
  const loadResult = await load.exited;
  const serviceResult = await stopService(service);
  process.off('SIGINT', interrupt);
  console.log('');

  const problems = [];
  if (loadResult.code !== 0)
    problems.push(`the load generator failed (${loadResult.signal || `exit code ${loadResult.code}`})`);
  if (serviceResult.code !== 0) {
    problems.push(`the payment service exited with ${serviceResult.signal || `code ${serviceResult.code}`}`);
  }

  if (external) {
    console.log(`The metrics went to ${endpoint} over ${protocol}, resource service.name=${env.OTEL_SERVICE_NAME}.`);
    console.log(`Look there for ${METRICS.PROCESS_NETWORK_IO} (by tcp.connection.side, server.address/port and`);
    console.log(`network.io.direction), tcp.connection.*, tcp.* histograms and otel_node_ebpf.* self-telemetry.`);
  } else {
    // The SDK exports before the service exits; a short grace period covers a request still in flight.
    await receiver
      .waitFor(() => receiver.points().some((p) => p.name === METRICS.PROCESS_NETWORK_IO), 3000)
      .catch(() => undefined);
    await receiver.stop();
    const points = receiver.points();
    const req = receiver.requests;
    console.log(
      `What the receiver got from the service (${req.grpc + req['http/protobuf'] + req['http/json']} export requests):`,
    );
    console.log('');
    console.log(summarize(points));
    console.log('');
    console.log('Reading it: "server" rows are the calls the load generator made to the service (server.port is the');
    console.log('service\'s own port); "client" rows are connections the service opened, here the SDK\'s own exports');
    console.log(
      'to the receiver. Bytes, connections and latencies are counted by the kernel, not by wrapping Node APIs.',
    );
    const charges = receiver.spans().filter((s) => s.kind === 'server' && s.attributes['rpc.method'] === 'Charge');
    const enriched = charges.filter((s) => s.attributes['tcp.io.receive'] !== undefined);
    if (env.OTEL_TRACES_EXPORTER === 'otlp') {
      console.log('');
      console.log(`gRPC server spans of Charge: ${charges.length}, ${enriched.length} with kernel attributes. The last one:`);
      const last = enriched.at(-1);
      if (last) {
        const ms = Number(last.endTimeUnixNano - last.startTimeUnixNano) / 1e6;
        console.log(`  ${last.name}  ${ms.toFixed(3)} ms  status ${last.attributes['rpc.grpc.status_code']}`);
        for (const [k, v] of Object.entries(last.attributes)) if (/^(tcp|dns|tls)\./.test(k)) console.log(`    ${k} = ${v}`);
        console.log('  (its window: from where the previous call on the connection ended to the handler\'s answer; see README)');
      } else {
        problems.push(`no Charge server span with kernel attributes arrived (${charges.length} without)`);
      }
    }
    if (!points.some((p) => p.name === METRICS.PROCESS_NETWORK_IO)) {
      problems.push(
        `no ${METRICS.PROCESS_NETWORK_IO} metrics arrived, so the kernel measurements did not reach the receiver` +
          (points.length ? ` (it got: ${receiver.metricNames().join(', ')})` : ' (it got no metrics at all)'),
      );
    }
  }

  if (problems.length) fail(problems.join('; '));
  console.log('\ndemo ok');
}

main().catch((err) => fail(err.stack || String(err)));

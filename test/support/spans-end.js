'use strict';
// How the span test applications end: shut the SDK that register started down, so that every span is exported, and
// print {"done": its status, "node": the version that ran} (test/spans.test.js checks both).
const out = o => process.stdout.write(JSON.stringify(o) + '\n');

async function shutdownAndReport() {
  const handle = globalThis[Symbol.for('otel-node-ebpf')];
  const status = handle.status();
  await handle.shutdown();
  out({ done: status, node: process.version });
}

module.exports = { out, shutdownAndReport };

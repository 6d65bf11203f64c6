'use strict';
// The step runner of the workloads that test/*.test.js start with the SDK preloaded (uprobe-, files-, threadpool-
// workload.js): the steps come as JSON in argv[2]; each step is an object whose one key names its handler. Prints one
// JSON line per event, then {"done": true, "status": <the SDK's status()>} (or {"error"} with exit code 1).
const steps = JSON.parse(process.argv[2]);
const out = obj => process.stdout.write(JSON.stringify(obj) + '\n');

function run(handlers) {
  (async () => {
    for (const step of steps) {
      const name = Object.keys(handlers).find(k => k in step);
      await handlers[name](step);
    }
    const handle = globalThis[Symbol.for('otel-node-ebpf')];
    out({ done: true, status: handle ? handle.status() : null });
  })().catch(err => {
    out({ error: err.message });
    process.exitCode = 1;
  });
}

module.exports = { out, run };

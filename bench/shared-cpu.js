#!/usr/bin/env node
'use strict';
// The overhead benchmark's third method, the one that resolves a few percent on a VM whose speed drifts: the servers
// of all modes run at once on the same CPU (0), each under its own wrk (all on CPU 1), for several rounds. The
// kernel's fair scheduler gives each busy server the same share of CPU 0 at every moment, so whatever the machine
// does affects all of them alike, and their throughputs stand in the inverse ratio of their CPU cost per request.
// Ratios per round against the first mode, then the median. Latency is not measured: under a shared CPU it says
// nothing about the SDK. Name a setting twice for an A/A control.
//
//   node bench/shared-cpu.js [modes JSON] [rounds]
//   modes: { name: { sdk: bool, env?: {...} } }; in env, the strings GRPC_ENDPOINT and HTTP_ENDPOINT stand for this
//   process's OTLP receiver. Default: off, control (off again), on, and on without exporting (OTEL_METRICS_EXPORTER=none).
//   ROUND_S seconds per round (default 5), after 3 s of warm-up load. Needs root and a build, like bench/run.js.

const fs = require('node:fs');
const { runWithServers, spread, wrkBurst } = require('./burst');

const MODES = JSON.parse(
  process.argv[2] || '{"off":{"sdk":false},"control":{"sdk":false},"on":{"sdk":true},"on-no-export":{"sdk":true,"env":{"OTEL_METRICS_EXPORTER":"none"}}}',
);
const ROUNDS = Number(process.argv[3] || 8);
const ROUND_S = Number(process.env.ROUND_S || 5);

/** User + system CPU of a process so far, in ms (/proc/PID/stat, clock ticks of 10 ms). */
function cpuMs(pid) {
  const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(f[11]) + Number(f[12])) * 10;
}

runWithServers('shared-cpu', MODES, async (servers, names) => {
  for (const name of names) Object.assign(servers[name], { rps: [], cpuUs: [] });
  await Promise.all(names.map((n) => wrkBurst(servers[n].port, 3)));
  console.log(`shared CPU: ${names.join(', ')} on CPU 0 at once; ${ROUNDS} rounds of ${ROUND_S} s`);
  for (let round = 0; round < ROUNDS; round++) {
    const before = names.map((n) => cpuMs(servers[n].child.pid));
    const rps = (await Promise.all(names.map((n) => wrkBurst(servers[n].port, ROUND_S)))).map((b) => b.rps);
    names.forEach((n, i) => {
      servers[n].rps.push(rps[i]);
      servers[n].cpuUs.push(((cpuMs(servers[n].child.pid) - before[i]) * 1000) / (rps[i] * ROUND_S));
    });
    console.log(`  ${round}: ${names.map((n, i) => `${n} ${rps[i].toFixed(0)} req/s ${servers[n].cpuUs[round].toFixed(1)} µs/req`).join(' | ')}`);
  }
  const ref = servers[names[0]];
  console.log(`\nper round against ${names[0]}, median (min–max):`);
  for (const name of names.slice(1)) {
    const own = servers[name];
    console.log(`  ${name}: throughput ${spread(own.rps.map((x, i) => x / ref.rps[i]))}, CPU per request ${spread(own.cpuUs.map((x, i) => x / ref.cpuUs[i]))}`);
  }
});

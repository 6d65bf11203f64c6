#!/usr/bin/env node
'use strict';
// The overhead benchmark's second method, for a machine whose speed drifts (a VM with steal time): the servers of
// all modes live for the whole run, side by side, and short bursts of load alternate between them (ABBA order), so
// that each pair of bursts meets the same machine. Ratios are per pair of bursts, then the median. The first mode is
// the reference; name the same setting twice for an A/A control.
//
//   node bench/interleaved.js [modes JSON] [bursts]
//   modes: { name: { sdk: bool, env?: {...} } }, default {"off":{"sdk":false},"on":{"sdk":true},"control":{"sdk":false}}
//   BURST_S seconds of load per burst (default 2); wrk -t1 -c32, servers on CPU 0, wrk and this driver on CPU 1.
// Long-lived servers measure a steady state (V8's young generation grown in both), not a fresh process's first
// seconds; RSS is read once, at the end. Needs root and a build, like bench/run.js.

const fs = require('node:fs');
const { runWithServers, spread, wrkBurst } = require('./burst');

const MODES = JSON.parse(process.argv[2] || '{"off":{"sdk":false},"on":{"sdk":true},"control":{"sdk":false}}');
const BURSTS = Number(process.argv[3] || 30);
const BURST_S = Number(process.env.BURST_S || 2);

const rssMB = (pid) => Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) / 1024;

runWithServers('interleaved', MODES, async (servers, names) => {
  for (const name of names) {
    servers[name].bursts = [];
    await wrkBurst(servers[name].port, 3); // JIT warm-up
  }
  console.log(`interleaved: ${names.join(', ')}; ${BURSTS} bursts of ${BURST_S} s each, ABBA order`);
  for (let b = 0; b < BURSTS; b++) {
    for (const name of b % 2 ? [...names].reverse() : names) servers[name].bursts.push(await wrkBurst(servers[name].port, BURST_S));
    console.log(`  ${b}: ${names.map((n) => `${n} ${servers[n].bursts[b].rps.toFixed(0)} req/s p99 ${servers[n].bursts[b].p99} µs`).join(' | ')}`);
  }
  const ref = servers[names[0]];
  console.log(`\nper pair of bursts against ${names[0]}, median (min–max):`);
  for (const name of names.slice(1)) {
    const own = servers[name].bursts;
    const rss = (rssMB(servers[name].child.pid) - rssMB(ref.child.pid)).toFixed(1);
    console.log(
      `  ${name}: throughput ${spread(own.map((x, i) => x.rps / ref.bursts[i].rps))}, p99 ${spread(own.map((x, i) => x.p99 / ref.bursts[i].p99))}, ` +
        `RSS at the end ${rss} MB beside ${names[0]}'s`,
    );
  }
});

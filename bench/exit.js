#!/usr/bin/env node
'use strict';
// How long the SDK makes a process take to end (`node bench/exit.js`, as root, after npm run build). A process with
// the SDK preloaded does no work and ends on its own (the event loop empties); per round: from its start to its exit
// event (start-up, and the final export: the SDK's exit listener runs before this script's), and from its exit event to its end as its parent sees it (the
// kernel closing what the process held: detaching a uprobe waits for RCU grace periods). With a collector that
// answers, and with none (connection refused: the final export does not retry); and a process that calls
// process.exit() after 100 ms instead. Medians of EXIT_ROUNDS rounds (default 5), ms.
const http = require('http');
const path = require('path');
const { spawn } = require('child_process');

const REGISTER = path.join(__dirname, '..', 'dist', 'register.js');
const ROUNDS = Number(process.env.EXIT_ROUNDS ?? 5);
const median = xs => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

function round(endpoint, sdk, exits) {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    let exitAt;
    const script = `process.on("exit", () => console.log(Date.now()))${exits ? '; setTimeout(() => process.exit(0), 100)' : ''}`;
    const args = [...(sdk ? ['--require', REGISTER] : []), '-e', script];
    const child = spawn(process.execPath, args, { env: { ...process.env, OTEL_EXPORTER_OTLP_ENDPOINT: endpoint }, stdio: ['ignore', 'pipe', 'ignore'] });
    child.stdout.on('data', d => (exitAt = Number(String(d).trim())));
    child.on('error', reject);
    child.on('close', () => resolve({ toExit: exitAt - t0, exitToGone: Date.now() - exitAt }));
  });
}

const collector = http.createServer((req, res) => req.resume().on('end', () => res.end()));
collector.listen(0, '127.0.0.1', async () => {
  const modes = {
    'no SDK': ['http://127.0.0.1:9', false],
    'SDK, collector answers': [`http://127.0.0.1:${collector.address().port}`, true],
    'SDK, collector down (refused)': ['http://127.0.0.1:9', true],
    'no SDK, process.exit()': ['http://127.0.0.1:9', false, true],
    'SDK, collector answers, process.exit()': [`http://127.0.0.1:${collector.address().port}`, true, true],
  };
  console.log('| mode | start to exit event, ms | exit event to process gone, ms |\n| --- | --- | --- |');
  for (const [name, [endpoint, sdk, exits = false]] of Object.entries(modes)) {
    const rounds = [];
    for (let i = 0; i < ROUNDS; i++) rounds.push(await round(endpoint, sdk, exits));
    console.log(`| ${name} | ${median(rounds.map(r => r.toExit))} | ${median(rounds.map(r => r.exitToGone))} |`);
  }
  collector.close();
});

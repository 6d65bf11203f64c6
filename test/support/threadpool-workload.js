'use strict';
// A process that gives libuv's thread pool a known amount of work, run by test/threadpool.test.js with the SDK
// preloaded, under each Node.js version. Prints one JSON line per step, then {"done": true, "status": ...}.
//
// Steps (in order):
//   { "staircase": [tasks, ms] }  `tasks` reads of one byte, each from a FIFO of its own, all submitted at once; every
//                                 `ms` the main thread writes to the FIFOs of the next batch of as many tasks as there
//                                 are workers (UV_THREADPOOL_SIZE), so each batch runs `ms` and the next batch waits for
//                                 it: the queue waits form a staircase
//   { "kinds": n }                n fs.stat, n crypto.pbkdf2, n zlib.deflate, n dns.lookup('localhost'), concurrently;
//                                 then one synchronous fs call (which runs uv__fs_work without the pool)
//   { "sleep": ms }
//   { "busy": ms }                pbkdf2 tasks back to back for ms; prints {"tasks": n}
const crypto = require('crypto');
const dns = require('dns');
const fs = require('fs');
const os = require('os');
const path = require('path');
const zlib = require('zlib');
const { execFileSync } = require('child_process');
const { promisify } = require('util');

const { out, run } = require('./steps');
const WORKERS = Number(process.env.UV_THREADPOOL_SIZE);

const handlers = {
  async staircase(step) {
    const [tasks, ms] = step.staircase;
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'oneb-tp-'));
    // one FIFO per task, opened read-write (opening does not wait for a writer): a task's read returns when the main
    // thread writes to its FIFO, and no other task can take that byte
    const fds = [];
    for (let i = 0; i < tasks; i++) {
      execFileSync('mkfifo', [path.join(dir, `fifo${i}`)]);
      fds.push(fs.openSync(path.join(dir, `fifo${i}`), 'r+'));
    }
    const reads = fds.map(fd => promisify(fs.read)(fd, Buffer.alloc(1), 0, 1, null));
    for (let batch = 0; batch * WORKERS < tasks; batch++) {
      await new Promise(r => setTimeout(r, ms));
      for (const fd of fds.slice(batch * WORKERS, (batch + 1) * WORKERS)) fs.writeSync(fd, Buffer.alloc(1)); // synchronous: no pool task
    }
    await Promise.all(reads);
    for (const fd of fds) fs.closeSync(fd);
    fs.rmSync(dir, { recursive: true });
    out({ staircase: tasks });
  },
  async kinds(step) {
    const n = step.kinds;
    const all = [];
    for (let i = 0; i < n; i++) {
      all.push(fs.promises.stat('/'));
      all.push(promisify(crypto.pbkdf2)('secret', 'salt', 1000, 32, 'sha256'));
      all.push(promisify(zlib.deflate)(Buffer.alloc(1000, i)));
      all.push(dns.promises.lookup('localhost'));
    }
    await Promise.all(all);
    fs.statSync('/');
    out({ kinds: n });
  },
  async sleep(step) {
    await new Promise(r => setTimeout(r, step.sleep));
  },
  async busy(step) {
    const end = Date.now() + step.busy;
    let n = 0;
    while (Date.now() < end) {
      await promisify(crypto.pbkdf2)('secret', 'salt', 1, 32, 'sha256');
      n++;
    }
    out({ tasks: n });
  },
};

run(handlers);

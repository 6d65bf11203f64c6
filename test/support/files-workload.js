'use strict';
// A process that reads and writes known numbers of bytes to files in a folder, run by test/files.test.js with the SDK
// preloaded, under each Node.js version. Prints one JSON line per step, then {"done": true, "status": ...}.
//
// Steps (in order):
//   { "files": dir }       dir/sync.bin: 1,234,567 bytes by writeFileSync, read back by readFileSync;
//                          dir/async.bin: 654,321 bytes by fs.promises.writeFile (thread pool), read back by
//                          fs.promises.readFile; dir/stream.bin: 100 chunks of 1000 bytes through a write stream;
//                          dir/open.bin: 4096 bytes written and left open (the kernel still holds it at export)
//   { "many": [dir, n] }   n files dir/f<i>.bin of i+1 bytes each, by writeFileSync
//   { "churn": [dir, n, rounds] }  n files dir/c<i>.bin of 1000+i bytes each, written concurrently (fs.promises.writeFile:
//                          the thread pool's threads open, write and close at once, reusing each other's fds), `rounds`
//                          times over
//   { "sleep": ms }
const fs = require('fs');
const path = require('path');

const { out, run } = require('./steps');
let keepOpen;

const handlers = {
  async files(step) {
    const dir = step.files;
    fs.writeFileSync(path.join(dir, 'sync.bin'), Buffer.alloc(1234567, 1));
    const syncRead = fs.readFileSync(path.join(dir, 'sync.bin')).length;
    await fs.promises.writeFile(path.join(dir, 'async.bin'), Buffer.alloc(654321, 2));
    const asyncRead = (await fs.promises.readFile(path.join(dir, 'async.bin'))).length;
    await new Promise((resolve, reject) => {
      const s = fs.createWriteStream(path.join(dir, 'stream.bin'));
      s.on('error', reject);
      s.on('close', resolve);
      for (let i = 0; i < 100; i++) s.write(Buffer.alloc(1000, 3));
      s.end();
    });
    keepOpen = fs.openSync(path.join(dir, 'open.bin'), 'w');
    fs.writeSync(keepOpen, Buffer.alloc(4096, 4));
    out({ files: { syncRead, asyncRead } });
  },
  async many(step) {
    const [dir, n] = step.many;
    for (let i = 0; i < n; i++) fs.writeFileSync(path.join(dir, `f${i}.bin`), Buffer.alloc(i + 1));
    out({ many: n });
  },
  async churn(step) {
    const [dir, n, rounds] = step.churn;
    for (let r = 0; r < rounds; r++) {
      await Promise.all(Array.from({ length: n }, (_, i) => fs.promises.writeFile(path.join(dir, `c${i}.bin`), Buffer.alloc(1000 + i))));
    }
    out({ churn: n * rounds });
  },
  async sleep(step) {
    await new Promise(r => setTimeout(r, step.sleep));
  },
};

run(handlers);

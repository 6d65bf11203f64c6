'use strict';
// A process that does a known number of DNS lookups and TLS handshakes, run by the uprobe tests with the SDK
// preloaded, under each Node.js version. Prints one JSON line per step, then {"done": true, "status": ...}.
//
// Steps (in order):
//   { "lookup": ["a.test", "a.test", "missing.test"] }   sequential dns.lookup()s; prints {"lookups": {name: code or "ok"}}
//   { "lookupFor": ["a.test", ms] }                       lookups of one name back to back for ms; prints {"lookedUp": n}
//   { "tls": K, "key": path, "cert": path }               a local TLS server and K connections to it, each a full
//                                                         handshake that sends "ping" and reads "pong"; prints {"handshakes": K}
//   + "writes": W                                         then W writes of 100 bytes on one more connection, each
//                                                         after the previous one was flushed; prints {"written": bytes}
//   { "tlsFail": "version" }                              a handshake that fails (client TLS 1.2 only, server TLS 1.3 only)
//   { "sleep": ms }
const dns = require('dns');
const fs = require('fs');
const tls = require('tls');

const { out, run } = require('./steps');

function tlsServer(step, options = {}) {
  const server = tls.createServer({ key: fs.readFileSync(step.key), cert: fs.readFileSync(step.cert), ...options }, s => {
    s.on('data', d => {
      if (d.includes('ping')) s.end('pong');
    });
    s.on('error', () => {});
  });
  server.on('tlsClientError', () => {});
  return new Promise(r => server.listen(0, '127.0.0.1', () => r(server)));
}

function connect(port, options = {}) {
  return new Promise((resolve, reject) => {
    const c = tls.connect({ port, host: '127.0.0.1', rejectUnauthorized: false, ...options }, () => c.write('ping'));
    let got = '';
    c.on('data', d => (got += d));
    c.on('close', () => resolve(got));
    c.on('error', reject);
  });
}

const handlers = {
  async lookup(step) {
    const result = {};
    for (const name of step.lookup) {
      try {
        await dns.promises.lookup(name);
        result[name] = 'ok';
      } catch (err) {
        result[name] = err.code;
      }
    }
    out({ lookups: result });
  },
  async lookupFor(step) {
    const [name, ms] = step.lookupFor;
    const end = Date.now() + ms;
    let n = 0;
    while (Date.now() < end) {
      await dns.promises.lookup(name);
      n++;
    }
    out({ lookedUp: n });
  },
  async tls(step) {
    const server = await tlsServer(step);
    const { port } = server.address();
    for (let i = 0; i < step.tls; i++) {
      const got = await connect(port);
      if (got !== 'pong') throw new Error(`handshake ${i}: got ${JSON.stringify(got)}`);
    }
    out({ handshakes: step.tls });
    if (step.writes) {
      let written = 0;
      await new Promise((resolve, reject) => {
        const c = tls.connect({ port, host: '127.0.0.1', rejectUnauthorized: false }, async () => {
          // one SSL_write each: a write waits for the previous one to be flushed (Node would coalesce them)
          for (let i = 0; i < step.writes; i++) {
            await new Promise(r => c.write(Buffer.alloc(100, 1), r));
            written += 100;
          }
          c.end();
        });
        c.on('data', () => {});
        c.on('close', resolve);
        c.on('error', reject);
      });
      out({ written });
    }
    await new Promise(r => server.close(r));
  },
  async tlsFail(step) {
    const server = await tlsServer(step, { minVersion: 'TLSv1.3' });
    const err = await connect(server.address().port, { maxVersion: 'TLSv1.2' }).then(
      () => new Error('connected'),
      e => e,
    );
    out({ tlsFailed: err.code || err.message });
    await new Promise(r => server.close(r));
  },
  async sleep(step) {
    await new Promise(r => setTimeout(r, step.sleep));
  },
};

run(handlers);

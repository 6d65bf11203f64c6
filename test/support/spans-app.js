'use strict';
// An application with the SDK preloaded (node --require dist/register.js, OTEL_TRACES_EXPORTER=otlp): an HTTP or
// HTTPS server and client requests to it through one keep-alive agent, traced by the HTTP instrumentation that
// register loads. It measures, independently of the SDK, what crossed the client's socket during each request
// (Node's own socket.bytesWritten/bytesRead), then shuts the SDK down so that every span is exported.
//
// Config (argv[2], JSON): { tls?: {key, cert} (PEM paths), host?: name or address to connect to (default
// 127.0.0.1), port?: the server's (default any), requests: [{ body: bytes, reply: bytes }], hold?: true (after the requests, print {"holding"} and wait
// for a line on stdin: the connection stays open and idle meanwhile), pipelined?: [{ reply: bytes }] (then, plain
// HTTP only: GET /p0, /p1, ... written back to back in one write on a connection of their own, HTTP/1.1 pipelining),
// exit?: code (after the requests, process.exit(code) at once, once the server's last span ended: no shutdown),
// crash?: true (the same, but an uncaught exception instead of process.exit()), ownPipeline?: { hook } (the
// application's own tracing pipeline instead of register's: test/support/spans-own-pipeline.js) }.
// stdout, one JSON line each: {"request": i, "localPort", "reused", "written", "read", "serverPort"}, {"holding"},
// {"pipelined": [bytes of each response as it came back], "written"}, {"done": status}.
const config = JSON.parse(process.argv[2]);
// ownPipeline: { hook } (without --require register): the application's own tracing pipeline, set up before `http` loads
const own = config.ownPipeline && require('./spans-own-pipeline').setUp(config.ownPipeline);
const fs = require('fs');
const http = require('http');
const https = require('https');
const net = require('net');
const readline = require('readline');

const { out, shutdownAndReport } = require('./spans-end');
const mod = config.tls ? https : http;

const replies = new Map(); // path -> bytes
const handler = (req, res) => {
  req.resume();
  req.on('end', () => res.end(Buffer.alloc(replies.get(req.url) ?? 0, 7)));
};
const server = config.tls
  ? https.createServer({ key: fs.readFileSync(config.tls.key), cert: fs.readFileSync(config.tls.cert) }, handler)
  : http.createServer(handler);
const agent = new mod.Agent({ keepAlive: true, maxSockets: 1, rejectUnauthorized: false });

function request(i, { body, reply }) {
  const path = `/r${i}`;
  replies.set(path, reply);
  return new Promise((resolve, reject) => {
    const req = mod.request({ host: config.host ?? '127.0.0.1', port: server.address().port, path, method: 'POST', agent, headers: { 'content-length': body } }, res => {
      res.resume();
      res.on('end', () => {
        const s = req.socket;
        resolve({ request: i, localPort: s.localPort, reused: req.reusedSocket, written: s.bytesWritten - start.written, read: s.bytesRead - start.read, serverPort: server.address().port });
      });
    });
    let start;
    req.on('socket', s => {
      start = { written: s.bytesWritten, read: s.bytesRead };
    });
    req.on('error', reject);
    req.end(Buffer.alloc(body, 1));
  });
}

/** Pipelined requests: the bytes of each response, split where its Content-Length says it ends. */
function pipelined(list) {
  const text = list.map((r, i) => (replies.set(`/p${i}`, r.reply), `GET /p${i} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`)).join('');
  return new Promise((resolve, reject) => {
    const socket = net.connect(server.address().port, '127.0.0.1', () => socket.write(text));
    const sizes = [];
    let buf = Buffer.alloc(0);
    socket.on('data', d => {
      buf = Buffer.concat([buf, d]);
      for (let head; (head = buf.indexOf('\r\n\r\n')) >= 0; ) {
        const size = head + 4 + Number(/^content-length: *(\d+)/im.exec(buf.subarray(0, head).toString())[1]);
        if (buf.length < size) break;
        sizes.push(size);
        buf = buf.subarray(size);
      }
      if (sizes.length === list.length) {
        socket.end();
        resolve({ pipelined: sizes, written: Buffer.byteLength(text) });
      }
    });
    socket.on('error', reject);
  });
}

server.listen(config.port ?? 0, '127.0.0.1', async () => {
  try {
    for (const [i, r] of config.requests.entries()) out(await request(i, r));
    if (config.pipelined) out(await pipelined(config.pipelined));
    if (config.hold) {
      out({ holding: true });
      const rl = readline.createInterface({ input: process.stdin });
      await new Promise(r => rl.once('line', r));
      rl.close();
      process.stdin.destroy(); // nothing more to read: let the process end
    }
    if (config.exit !== undefined || config.crash) {
      // the server's span ends at its response's 'close', a turn after the client saw the response end
      await new Promise(resolve => setImmediate(resolve));
      out({ exiting: config.exit ?? 'crash', node: process.version });
      if (config.crash) setImmediate(() => {
        throw new Error('spans-app: crashed on purpose');
      });
      else process.exit(config.exit);
      return;
    }
    agent.destroy();
    server.close();
    await (own ? own.shutdownAndReport() : shutdownAndReport());
  } catch (err) {
    out({ error: err.stack });
    process.exitCode = 1;
  }
});

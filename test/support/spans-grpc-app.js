'use strict';
// A gRPC application with the SDK preloaded (node --require dist/register.js, OTEL_TRACES_EXPORTER=otlp): a grpc-js
// server and a client of it on one channel, traced by the gRPC instrumentation that register loads. Unary and
// streaming calls (server, client, both), one after the other. It measures, with Node's own counters rather than the kernel's
// (socket.bytesWritten/bytesRead, which count what the HTTP/2 session wrote and read), at the instants that bound the
// spans' windows: the client span ends just before the call's callback (a response stream: at its 'status'); the
// server span when the handler answers (a response stream: at its 'finish'); the server's window starts a tick after
// the previous call's HTTP/2 stream closed.
//
// Config (argv[2], JSON): { calls: [{ body: bytes, reply: bytes, stream?: n, upload?: n, chat?: n }], tls?: {key, cert}
// (PEM paths: TLS to localhost), ipv6?: true (over ::1) }. A call is unary, or with `stream` server streaming (`stream`
// replies), with `upload` client streaming (`upload` requests, one reply), with `chat` bidirectional (`chat` requests,
// each answered by a reply as it arrives).
// With TLS the sockets counted are the TCP ones under it, as the kernel's.
// stdout, one JSON line each: {"request": i, "client": {written, read}, "server": {written, read}, "peerPort"},
// {"done": status}.
const dc = require('diagnostics_channel');
const fs = require('fs');
const grpc = require('@grpc/grpc-js');

const config = JSON.parse(process.argv[2]);
const { out, shutdownAndReport } = require('./spans-end');

// the test's own view of the two ends of the connection
let clientSocket, serverSocket;
dc.subscribe('net.client.socket', m => (clientSocket = m.socket));
dc.subscribe('net.server.socket', m => (serverSocket = m.socket));
const counts = s => ({ written: s.bytesWritten, read: s.bytesRead });
const minus = (a, b) => ({ written: a.written - b.written, read: a.read - b.read });

const identity = b => b;
const service = {
  Echo: { path: '/oneb.test.Bytes/Echo', requestStream: false, responseStream: false, requestSerialize: identity, requestDeserialize: identity, responseSerialize: identity, responseDeserialize: identity },
  Stream: { path: '/oneb.test.Bytes/Stream', requestStream: false, responseStream: true, requestSerialize: identity, requestDeserialize: identity, responseSerialize: identity, responseDeserialize: identity },
  Upload: { path: '/oneb.test.Bytes/Upload', requestStream: true, responseStream: false, requestSerialize: identity, requestDeserialize: identity, responseSerialize: identity, responseDeserialize: identity },
  Chat: { path: '/oneb.test.Bytes/Chat', requestStream: true, responseStream: true, requestSerialize: identity, requestDeserialize: identity, responseSerialize: identity, responseDeserialize: identity },
};
const replies = [];
let atHandler;
// The server's counts a tick after the previous call's HTTP/2 stream closed: where the server span's window starts
// (zero before the first call). After a stream, the client's flow-control frames for it arrive until then.
const { http2StreamOf } = require('../../dist/grpc');
let quiet = { written: 0, read: 0 };
let quietAtHandler;
function served(call) {
  quietAtHandler = quiet;
  http2StreamOf(call)?.once('close', () => setImmediate(() => (quiet = counts(serverSocket))));
}
const server = new grpc.Server();
server.addService(service, {
  Echo: (call, callback) => {
    const i = call.request.readUInt32BE(0);
    atHandler = counts(serverSocket);
    served(call);
    callback(null, Buffer.alloc(replies[i], 7));
  },
  // server streaming: `stream` messages of `reply` bytes; the server span ends at the call's 'finish' (the
  // instrumentation's listener runs first), where the server's counts are taken
  Stream: call => {
    const i = call.request.readUInt32BE(0);
    served(call);
    call.on('finish', () => (atHandler = counts(serverSocket)));
    for (let n = 0; n < streams[i]; n++) call.write(Buffer.alloc(replies[i], 7));
    call.end();
  },
  // client streaming: the handler runs when the call's headers arrive; it answers after the last request, and the
  // instrumentation ends the span inside the callback
  Upload: (call, callback) => {
    served(call);
    let i;
    call.on('data', m => (i ??= m.readUInt32BE(0)));
    call.on('end', () => {
      atHandler = counts(serverSocket);
      callback(null, Buffer.alloc(replies[i], 7));
    });
  },
  // bidirectional: a reply to every request as it arrives; the span ends at the call's 'finish', as a server stream's
  Chat: call => {
    served(call);
    call.on('data', m => call.write(Buffer.alloc(replies[m.readUInt32BE(0)], 7)));
    call.on('end', () => call.end());
    call.on('finish', () => (atHandler = counts(serverSocket)));
  },
});
const streams = [];

// Node's counts at the end of a call's client span, and the server's at its handler and at its window's start.
const measured = () => ({ client: counts(clientSocket), handler: atHandler, quiet: quietAtHandler });

/** A call whose response is a stream of `n` messages of `reply` bytes: its client span ends at its 'status'. */
function streamed(s, n, reply) {
  // the instrumentation's 'status' listener runs first: the counts are taken after the span ended
  return new Promise((resolve, reject) => {
    let received = 0;
    s.on('data', m => (received += m.length));
    s.on('error', reject);
    s.on('status', status => {
      if (status.code !== grpc.status.OK) return reject(new Error(status.details));
      if (received !== n * reply) return reject(new Error(`received ${received} bytes, not ${n * reply}`));
      resolve(measured());
    });
  });
}

/** A call with one response: its client span ends just before `callback`. */
function answered(reply, start) {
  return new Promise((resolve, reject) =>
    start((err, response) => {
      if (err) return reject(err);
      if (response.length !== reply) return reject(new Error(`reply of ${response.length} bytes, not ${reply}`));
      resolve(measured());
    }),
  );
}

function call(client, i, { body, reply, stream, upload, chat }) {
  replies[i] = reply;
  const request = Buffer.alloc(body, 1);
  request.writeUInt32BE(i, 0);
  const send = (s, n) => {
    for (let k = 0; k < n; k++) s.write(request);
    s.end();
  };
  if (stream) {
    streams[i] = stream;
    return streamed(client.Stream(request), stream, reply);
  }
  if (upload) return answered(reply, callback => send(client.Upload(callback), upload));
  if (chat) {
    const s = client.Chat();
    const done = streamed(s, chat, reply);
    send(s, chat);
    return done;
  }
  return answered(reply, callback => client.Echo(request, callback));
}

const tls = config.tls && { key: fs.readFileSync(config.tls.key), cert: fs.readFileSync(config.tls.cert) };
const serverCredentials = tls ? grpc.ServerCredentials.createSsl(null, [{ private_key: tls.key, cert_chain: tls.cert }]) : grpc.ServerCredentials.createInsecure();
const host = config.ipv6 ? '[::1]' : '127.0.0.1';
server.bindAsync(`${host}:0`, serverCredentials, async (err, port) => {
  try {
    if (err) throw err;
    const Client = grpc.makeGenericClientConstructor(service);
    const client = tls ? new Client(`localhost:${port}`, grpc.credentials.createSsl(tls.cert)) : new Client(`${host}:${port}`, grpc.credentials.createInsecure());
    const zero = { written: 0, read: 0 };
    let previous = { client: zero };
    for (const [i, c] of config.calls.entries()) {
      const now = await call(client, i, c);
      out({ request: i, client: minus(now.client, previous.client), server: minus(now.handler, now.quiet), peerPort: port });
      previous = now;
    }
    client.close();
    server.forceShutdown();
    await shutdownAndReport();
  } catch (e) {
    out({ error: e.stack });
    process.exitCode = 1;
  }
});

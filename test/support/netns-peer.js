'use strict';
// Everything a workload talks to, in one process meant to run inside a network namespace the test made
// (ip netns exec NS node netns-peer.js '<json>'): a real OTLP receiver and a TCP peer, both on 127.0.0.1 of that
// namespace, so that no packet of the test leaves it.
//
// Config (argv[2], JSON): { "reply": B } — the peer answers every connection with B bytes: as soon as it has read
// `expect` bytes when "expect": A is given (the client may keep the connection open), else when the client
// half-closes. It closes its side when the client has closed its own.
//
// stdout, one JSON line each:
//   {"ready": {grpcEndpoint, httpEndpoint, grpcPort, httpPort, peerPort}}
//   {"peer": {"remotePort": p, "received": n}}         a connection ended; n bytes were read from it
//   {"point": ReceivedPoint}                           every metric point the receiver decoded (64-bit times as strings)
//   {"span": ReceivedSpan}                             every span the receiver decoded (same)
//   {"error": message}
// stdin: "close <remotePort>" closes the peer's side of that connection first (the client sees the FIN while it still
// holds the connection open); "stop" (or end of input) stops both servers and exits.
const net = require('net');
const readline = require('readline');
const { OtlpReceiver } = require('../../dist/otlp/receiver');

const config = JSON.parse(process.argv[2] || '{}');
const reply = config.reply ?? 0;
const expect = config.expect;
const out = obj => process.stdout.write(JSON.stringify(obj, (_, v) => (typeof v === 'bigint' ? v.toString() : v)) + '\n');

const sockets = new Map(); // remote port -> socket
const peer = net.createServer({ allowHalfOpen: true }, s => {
  const remotePort = s.remotePort;
  sockets.set(remotePort, s);
  let n = 0;
  let replied = false;
  const answer = () => {
    if (replied) return;
    replied = true;
    s.write(Buffer.alloc(reply, 1));
  };
  s.on('data', d => {
    n += d.length;
    if (expect !== undefined && n >= expect) answer();
  });
  s.on('end', () => {
    answer();
    s.end();
    out({ peer: { remotePort, received: n } });
  });
  s.on('error', err => out({ error: `peer connection from port ${remotePort}: ${err.message}` }));
  s.on('close', () => sockets.delete(remotePort));
});

const receiver = new OtlpReceiver();
receiver.on('metrics', points => points.forEach(point => out({ point })));
receiver.on('spans', spans => spans.forEach(span => out({ span })));

let stopping = false;
async function stop() {
  if (stopping) return;
  stopping = true;
  for (const s of sockets.values()) s.destroy();
  await Promise.all([receiver.stop(), new Promise(r => peer.close(r))]);
  process.exit(0);
}

(async () => {
  const address = await receiver.start({ host: '127.0.0.1' });
  await new Promise(r => peer.listen(0, '127.0.0.1', r));
  out({ ready: { ...address, peerPort: peer.address().port } });
  readline
    .createInterface({ input: process.stdin })
    .on('line', l => {
      const [cmd, arg] = l.trim().split(/\s+/);
      if (cmd === 'stop') stop();
      else if (cmd === 'close') {
        const s = sockets.get(Number(arg));
        if (s) s.end();
        else out({ error: `close: no connection from port ${arg}` });
      }
    })
    .on('close', stop);
})().catch(err => {
  out({ error: err.message });
  process.exit(1);
});

'use strict';
// A node:cluster server of two workers (the SDK preloaded in every process: the workers inherit the primary's
// --require), scheduled as NODE_CLUSTER_SCHED_POLICY says: 'rr', the primary accepts every connection and hands it
// to a worker; 'none', the workers accept on the socket the primary shares with them. Each connection is read until
// REQUEST bytes came, then, as CLUSTER_END says: 'fin' (the default), answered with REPLY bytes and ended by the
// worker; 'reset', reset by the worker (socket.resetAndDestroy(): SO_LINGER 0, the socket goes to TCP_CLOSE in the
// worker's close()); 'peer-reset', answered with REPLY bytes, which the client reads and then resets the connection
// (the socket goes to TCP_CLOSE in softirq, and is freed when the worker closes it). It listens on every address, or
// on CLUSTER_HOST. Prints {"listening":port,"workers":[pids]}; a line on stdin disconnects the workers, and every
// process exits normally.
const cluster = require('cluster');
const net = require('net');

const REQUEST = 1000;
const REPLY = 500;
const END = process.env.CLUSTER_END || 'fin';

if (cluster.isPrimary) {
  const workers = [cluster.fork(), cluster.fork()];
  let port;
  let listening = 0;
  cluster.on('listening', (_worker, address) => {
    port = address.port;
    if (++listening === workers.length) console.log(JSON.stringify({ listening: port, workers: workers.map(w => w.process.pid) }));
  });
  process.stdin.once('data', () => {
    cluster.disconnect();
    process.stdin.destroy();
  });
} else {
  net
    .createServer(socket => {
      let got = 0;
      socket.on('error', () => {}); // the peer's reset
      socket.on('data', d => {
        got += d.length;
        if (got < REQUEST) return;
        if (END === 'reset') socket.resetAndDestroy();
        else if (END === 'peer-reset') socket.write(Buffer.alloc(REPLY));
        else socket.end(Buffer.alloc(REPLY));
      });
    })
    .listen(0, process.env.CLUSTER_HOST || undefined);
}

'use strict';
// A server that shares its port with other processes (SO_REUSEPORT: Node's reusePort, 22.12 and later): it listens on
// 127.0.0.1:<port>; once a client has sent 1000 bytes it answers with 500 and closes (REUSEPORT_END=fin), or only
// answers, for the client to reset the connection (peer-reset). Prints {"listening": port}; ends once a line arrives
// on stdin.
const net = require('net');
const readline = require('readline');

const [port] = JSON.parse(process.argv[2]);
const close = process.env.REUSEPORT_END !== 'peer-reset';
const server = net.createServer(c => {
  let n = 0;
  c.on('error', () => {}).on('data', d => {
    n += d.length;
    if (n === 1000) close ? c.end(Buffer.alloc(500)) : c.write(Buffer.alloc(500));
  });
});
server.listen({ port, host: '127.0.0.1', reusePort: true }, () => process.stdout.write(JSON.stringify({ listening: server.address().port }) + '\n'));
readline.createInterface({ input: process.stdin }).once('line', () => server.close(() => process.exit(0)));

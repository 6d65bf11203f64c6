'use strict';
// A server that shares its port with other processes (SO_REUSEPORT: Node's reusePort, 22.12 and later): it listens on
// 127.0.0.1:<port>, reads what each client sends and answers with 500 bytes; prints {"listening": port}, and ends
// once a line arrives on stdin.
const net = require('net');
const readline = require('readline');

const [port] = JSON.parse(process.argv[2]);
const server = net.createServer(c => c.on('error', () => {}).resume().on('end', () => c.end(Buffer.alloc(500))));
server.listen({ port, host: '127.0.0.1', reusePort: true }, () => process.stdout.write(JSON.stringify({ listening: server.address().port }) + '\n'));
readline.createInterface({ input: process.stdin }).once('line', () => server.close(() => process.exit(0)));

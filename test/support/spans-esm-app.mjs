// An ES module application (node --import dist/register.js, OTEL_TRACES_EXPORTER=otlp): the named import of
// node:http below is what the instrumentation sees only through the loader hook that register adds for --import.
// One POST to its own server; the same output as spans-app.js: {"request": 0, "written", "read", ...}, {"done"}.
import { createServer, request } from 'node:http';
import { out, shutdownAndReport } from './spans-end.js';

const config = JSON.parse(process.argv[2]);
const { body, reply } = config.requests[0];

const server = createServer((req, res) => {
  req.resume();
  req.on('end', () => res.end(Buffer.alloc(reply, 7)));
});
server.listen(0, '127.0.0.1', () => {
  const req = request({ host: '127.0.0.1', port: server.address().port, path: '/r0', method: 'POST', headers: { 'content-length': body } }, res => {
    res.resume();
    res.on('end', async () => {
      const s = req.socket;
      out({ request: 0, localPort: s.localPort, written: s.bytesWritten, read: s.bytesRead, serverPort: server.address().port });
      s.destroy();
      server.close();
      await shutdownAndReport();
    });
  });
  req.end(Buffer.alloc(body, 1));
});

'use strict';
// A collection in steps (src/turns.ts): the application's event loop runs between them, and the values are those of a
// collection at once. Real probes in this process (as root), a real connection.
const assert = require('assert');
const net = require('net');
const { context, createContextKey } = require('@opentelemetry/api');
const { AsyncLocalStorageContextManager } = require('@opentelemetry/context-async-hooks');
const { createMetricProducer } = require('../dist');
const { exportInNextTurn, nextTurn, runInTurns, runSteps } = require('../dist/turns');

const SENT = 1_234_567;

/** Turns of the event loop (check phases) while the promise that `start` returns is pending. */
async function turnsDuring(start) {
  let turns = 0;
  let pending = true;
  const tick = () => {
    if (!pending) return;
    turns++;
    setImmediate(tick);
  };
  setImmediate(tick);
  const value = await start();
  pending = false;
  return { value, turns };
}

describe('collection in steps', function () {
  it("the producer's collection lets the event loop run between its steps, and counts exactly", async () => {
    let received = 0;
    let done;
    const all = new Promise(resolve => (done = resolve));
    const server = net.createServer(s => s.on('data', d => (received += d.length) === SENT && done()));
    await new Promise(resolve => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address();
    const handle = createMetricProducer({ strict: true, temporality: 'cumulative' });
    const client = net.connect(port, '127.0.0.1');
    try {
      client.write(Buffer.alloc(SENT, 1));
      await all; // the connection stays open: its bytes come from the live reading, not a close event
      const transmitted = result => {
        const io = result.resourceMetrics.scopeMetrics[0].metrics.find(m => m.descriptor.name === 'process.network.io');
        const points = io.dataPoints.filter(p => p.attributes['server.port'] === port && p.attributes['tcp.connection.side'] === 'client' && p.attributes['network.io.direction'] === 'transmit');
        return points.map(p => p.value);
      };
      const { value: stepped, turns } = await turnsDuring(() => handle.producer.collect());
      assert.deepStrictEqual(stepped.errors, []);
      // at least the sockets collector's three steps, one more collector and the conversion; at once it would be 0
      assert.ok(turns >= 4, `the event loop turned ${turns} times during the collection`);
      assert.deepStrictEqual(transmitted(stepped), [SENT]);
      assert.deepStrictEqual(transmitted(handle.producer.collectNow()), [SENT]);
    } finally {
      client.destroy();
      server.close();
      handle.shutdown();
    }
  });

  it('a shutdown between two steps ends the collection with nothing, and nothing thrown', async () => {
    const handle = createMetricProducer({ strict: true });
    const collecting = handle.producer.collect();
    await nextTurn(); // the first step has run, the next waits for its turn
    handle.shutdown();
    const result = await collecting;
    assert.deepStrictEqual(result.errors, []);
    assert.deepStrictEqual(result.resourceMetrics.scopeMetrics, []);
  });

  it('runSteps runs every step at once; runInTurns one per turn, and rejects with what a step threw', async () => {
    function* three() {
      yield;
      yield;
      return 'done';
    }
    assert.strictEqual(runSteps(three()), 'done');
    const { value, turns } = await turnsDuring(() => runInTurns(three()));
    assert.strictEqual(value, 'done');
    assert.ok(turns >= 2, `${turns} turns`);
    function* failing() {
      yield;
      throw new Error('step failed');
    }
    await assert.rejects(runInTurns(failing()), /step failed/);
  });

  it("exportInNextTurn: the export starts a turn later, in the caller's context; a throwing export is a failed result", () =>
    withContextManager(async () => {
      const key = createContextKey('caller');
      const seen = [];
      const exporter = exportInNextTurn({
        export(items, resultCallback) {
          seen.push({ items, caller: context.active().getValue(key) });
          if (items === 'throw') throw new Error('serialiser failed');
          resultCallback({ code: 0 });
        },
      });
      const result = await context.with(context.active().setValue(key, 'reader'), () => {
        const exported = new Promise(resolve => exporter.export('metrics', resolve));
        assert.deepStrictEqual(seen, [], 'the export ran in the same turn');
        return exported;
      });
      assert.deepStrictEqual(result, { code: 0 });
      assert.deepStrictEqual(seen, [{ items: 'metrics', caller: 'reader' }]);
      const failed = await new Promise(resolve => exporter.export('throw', resolve));
      assert.strictEqual(failed.code, 1);
      assert.match(failed.error.message, /serialiser failed/);
    }));
});

/** Runs fn with a context manager that carries contexts across turns, as an application with tracing has. */
async function withContextManager(fn) {
  const manager = new AsyncLocalStorageContextManager().enable();
  context.setGlobalContextManager(manager);
  try {
    return await fn();
  } finally {
    context.disable();
    manager.disable();
  }
}

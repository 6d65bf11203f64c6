'use strict';
// src/span-slots.ts with bpf/spans.bpf.c against the real kernel: after each send (or receive) of this process on a
// registered socket, its slot holds exactly the counters getsockopt(TCP_INFO) returns until the next call. The smoothed
// RTT is the exception: it is as of the call, and an acknowledgement arriving afterwards moves the kernel's.
const assert = require('assert');
const net = require('net');
const { CI } = require('./support/harness');
const { loadAddon, BpfError } = require('../dist/native');
const { SpanSlots } = require('../dist/span-slots');
const { detectCapabilities } = require('../dist/capabilities');
const { TCP_INFO, TCP_INFO_SLOTS } = require('../dist/tcpinfo');

const FIELDS = ['STATE', 'BYTES_SENT', 'BYTES_RETRANS', 'BYTES_RECEIVED', 'NOTSENT_BYTES', 'TOTAL_RETRANS'];
const pick = info => Object.fromEntries(FIELDS.map(f => [f, info[TCP_INFO[f]]]));

describe('span slots (bpf/spans.bpf.c): TCP_INFO without a system call', function () {
  let addon, slots;
  const servers = [];
  before(function () {
    if (process.getuid() !== 0) {
      if (CI) throw new Error('these tests need root (BPF); CI runs as root');
      this.skip();
    }
    addon = loadAddon();
    if (addon instanceof BpfError) throw addon;
    slots = SpanSlots.open(addon, detectCapabilities());
    // this project's kernel (6.18) has the tracepoints: under CI a refusal is a failure
    if (typeof slots === 'string') throw new Error(`SpanSlots.open: ${slots}`);
  });
  after(() => {
    if (slots && typeof slots !== 'string') slots.close();
    for (const server of servers) server.close();
  });

  /** A loopback connection: [this process's client socket, the server's socket], both open. */
  async function pair() {
    const server = net.createServer();
    servers.push(server);
    const accepted = new Promise(resolve => server.once('connection', resolve));
    await new Promise(resolve => server.listen(0, '127.0.0.1', resolve));
    const client = net.connect(server.address().port, '127.0.0.1');
    await new Promise(resolve => client.once('connect', resolve));
    return [client, await accepted];
  }
  const settle = () => new Promise(resolve => setTimeout(resolve, 50));

  it('after each send and each receive the slot holds the counters of getsockopt(TCP_INFO); a socket not written since it registered has nothing', async () => {
    const [client, peer] = await pair();
    const getsockopt = new Float64Array(TCP_INFO_SLOTS);
    const readInfo = addon.tcpInfoReader(getsockopt);
    const fromSlot = new Float64Array(TCP_INFO_SLOTS);
    const handle = slots.register(client._handle.fd, 'both');
    assert.ok(handle, 'a free slot');
    assert.strictEqual(slots.read(handle, fromSlot), false, 'no send or receive since register()');

    for (const [send, reply] of [[1000, 5000], [70_000, 3], [1, 250_000]]) {
      client.write(Buffer.alloc(send, 1));
      await settle(); // written, acknowledged: nothing moves until the next call
      assert.strictEqual(readInfo(client._handle.fd), 0);
      assert.ok(slots.read(handle, fromSlot));
      assert.deepStrictEqual(pick(fromSlot), pick(getsockopt), `after a send of ${send}`);

      let got = 0;
      const all = new Promise(resolve => client.on('data', function on(d) {
        got += d.length;
        if (got === reply) client.off('data', on), resolve();
      }));
      peer.write(Buffer.alloc(reply, 2));
      await all;
      await settle();
      assert.strictEqual(readInfo(client._handle.fd), 0);
      assert.ok(slots.read(handle, fromSlot));
      assert.deepStrictEqual(pick(fromSlot), pick(getsockopt), `after receiving ${reply}`);
      assert.ok(fromSlot[TCP_INFO.SRTT_US] > 0, 'an RTT sample by the time the reply was read');
    }
    // the peer's socket was never registered: its slot-less calls left this slot alone, and release frees it
    slots.release(handle);
    client.destroy();
    peer.destroy();
  });

  it("a slot registered 'send' is written after sends only", async () => {
    const [client, peer] = await pair();
    const fromSlot = new Float64Array(TCP_INFO_SLOTS);
    const handle = slots.register(peer._handle.fd, 'send');
    peer.write(Buffer.alloc(4000));
    await settle();
    assert.ok(slots.read(handle, fromSlot));
    assert.strictEqual(fromSlot[TCP_INFO.BYTES_RECEIVED], 0);
    const received = new Promise(resolve => peer.once('data', resolve));
    client.write(Buffer.alloc(900));
    await received;
    await settle();
    assert.ok(slots.read(handle, fromSlot));
    assert.strictEqual(fromSlot[TCP_INFO.BYTES_RECEIVED], 0, 'the receive of 900 bytes did not write the slot');
    peer.write(Buffer.alloc(1));
    await settle();
    assert.ok(slots.read(handle, fromSlot));
    assert.strictEqual(fromSlot[TCP_INFO.BYTES_RECEIVED], 900, 'the next send did');
    assert.strictEqual(fromSlot[TCP_INFO.BYTES_SENT], 4001);
    slots.release(handle);
    client.destroy();
    peer.destroy();
  });

  it('a socket whose slot another socket holds is not followed, and leaves that slot alone; once released, the slot is its', async () => {
    // two slots: of three sockets, at least two hash to the same slot (bpf/spans.h)
    const small = SpanSlots.open(addon, detectCapabilities(), undefined, 2);
    if (typeof small === 'string') throw new Error(`SpanSlots.open: ${small}`);
    const sockets = [];
    try {
      for (let i = 0; i < 3; i++) sockets.push(...(await pair()));
      const clients = [sockets[0], sockets[2], sockets[4]];
      const bySlot = new Map();
      let holder, other;
      for (const c of clients) {
        const slot = small.slotOf(addon.socketCookie(c._handle.fd));
        if (bySlot.has(slot)) [holder, other] = [bySlot.get(slot), c];
        else bySlot.set(slot, c);
      }
      const held = small.register(holder._handle.fd, 'send');
      assert.ok(held, 'the first socket of the slot gets it');
      assert.strictEqual(small.register(other._handle.fd, 'send'), undefined, 'the second does not');
      const fromSlot = new Float64Array(TCP_INFO_SLOTS);
      holder.write(Buffer.alloc(300));
      other.write(Buffer.alloc(7000));
      await settle();
      assert.ok(small.read(held, fromSlot));
      assert.strictEqual(fromSlot[TCP_INFO.BYTES_SENT], 300, "the other socket's send did not write the holder's slot");

      small.release(held);
      const taken = small.register(other._handle.fd, 'send');
      assert.ok(taken, 'released, the slot is free');
      assert.strictEqual(taken.index, held.index);
      assert.strictEqual(small.read(taken, fromSlot), false, 'the counters there are still the previous socket\'s');
      holder.write(Buffer.alloc(5));
      other.write(Buffer.alloc(1));
      await settle();
      assert.ok(small.read(taken, fromSlot));
      assert.strictEqual(fromSlot[TCP_INFO.BYTES_SENT], 7001);
      small.release(taken);
    } finally {
      small.close();
      for (const s of sockets) s.destroy();
    }
  });
});

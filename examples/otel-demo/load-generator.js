'use strict';
// Calls PaymentService/Charge at a steady rate, mostly with good cards and some refused ones, then prints one line:
// calls, ok and refused counts, latency p50/p99. Exits 1 if a call failed unexpectedly (a good card refused, a bad
// card accepted, a transport error).
//
// Environment: TARGET (default 127.0.0.1:50051), RATE (calls/s, default 50), DURATION (s, default 20),
// CHANNELS (separate gRPC connections, default 2), INVALID_RATIO (share of refused cards, default 0.1).

const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

function envNumber(name, fallback) {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < 0) {
    console.error(`load generator: ${name}=${raw} is not a non-negative number`);
    process.exit(2);
  }
  return n;
}

const TARGET = process.env.TARGET || '127.0.0.1:50051';
const RATE = envNumber('RATE', 50);
const DURATION = envNumber('DURATION', 20);
const CHANNELS = Math.max(1, Math.floor(envNumber('CHANNELS', 2)));
const INVALID_RATIO = Math.min(1, envNumber('INVALID_RATIO', 0.1));

const year = new Date().getFullYear();
const GOOD_CARDS = [
  {
    credit_card_number: '4111-1111-1111-1111',
    credit_card_cvv: 123,
    credit_card_expiration_year: year + 2,
    credit_card_expiration_month: 1,
  },
  {
    credit_card_number: '5555555555554444',
    credit_card_cvv: 456,
    credit_card_expiration_year: year + 1,
    credit_card_expiration_month: 12,
  },
  {
    credit_card_number: '2223003122003222',
    credit_card_cvv: 789,
    credit_card_expiration_year: year + 3,
    credit_card_expiration_month: 6,
  },
];
// Refused: mostly expired, a few of a network the service does not take.
const BAD_CARDS = [
  {
    credit_card_number: '4111111111111111',
    credit_card_cvv: 321,
    credit_card_expiration_year: year - 1,
    credit_card_expiration_month: 3,
  },
  {
    credit_card_number: '5105105105105100',
    credit_card_cvv: 654,
    credit_card_expiration_year: year - 2,
    credit_card_expiration_month: 11,
  },
  {
    credit_card_number: '378282246310005',
    credit_card_cvv: 1234,
    credit_card_expiration_year: year + 1,
    credit_card_expiration_month: 5,
  },
];

function percentile(sorted, q) {
  if (!sorted.length) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)];
}

function ms(v) {
  return Number.isNaN(v) ? '-' : `${v.toFixed(v < 10 ? 2 : 1)} ms`;
}

async function main() {
  const definition = protoLoader.loadSync(path.join(__dirname, 'payment.proto'), { keepCase: true, longs: String });
  const { oteldemo } = grpc.loadPackageDefinition(definition);
  // A local subchannel pool per client: each client gets its own TCP connection instead of sharing one.
  const clients = Array.from(
    { length: CHANNELS },
    () =>
      new oteldemo.PaymentService(TARGET, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 }),
  );

  const total = Math.round(RATE * DURATION);
  const result = { ok: 0, refused: 0, unexpected: 0 };
  const latencies = [];
  const firstErrors = [];
  let sent = 0;

  const call = (i) =>
    new Promise((resolve) => {
      const bad = Math.floor((i + 1) * INVALID_RATIO) > Math.floor(i * INVALID_RATIO); // evenly spread
      const card = bad ? BAD_CARDS[i % BAD_CARDS.length] : GOOD_CARDS[i % GOOD_CARDS.length];
      const request = {
        amount: { currency_code: 'USD', units: String(10 + (i % 90)), nanos: (i % 100) * 10_000_000 },
        credit_card: card,
      };
      const started = process.hrtime.bigint();
      clients[i % clients.length].Charge(request, { deadline: Date.now() + 5000 }, (err, response) => {
        latencies.push(Number(process.hrtime.bigint() - started) / 1e6);
        if (!err && !bad && response && response.transaction_id) result.ok++;
        else if (err && bad && err.code === grpc.status.INVALID_ARGUMENT) result.refused++;
        else {
          result.unexpected++;
          if (firstErrors.length < 3) {
            firstErrors.push(
              err ? `${grpc.status[err.code]}: ${err.details}` : `card ${card.credit_card_number} accepted`,
            );
          }
        }
        resolve();
      });
    });

  // Issue calls on schedule: every tick sends those due by now, so the rate holds even when timers run late.
  const pending = [];
  const start = Date.now();
  await new Promise((resolve) => {
    const tick = () => {
      const due = Math.min(total, Math.floor(((Date.now() - start) / 1000) * RATE) + 1);
      while (sent < due) pending.push(call(sent++));
      if (sent >= total) {
        clearInterval(timer);
        resolve();
      }
    };
    const timer = setInterval(tick, 5);
    tick();
  });
  await Promise.all(pending);
  const elapsed = (Date.now() - start) / 1000;
  for (const c of clients) c.close();

  latencies.sort((a, b) => a - b);
  console.log(
    `${sent} calls in ${elapsed.toFixed(1)} s (${(sent / elapsed).toFixed(1)}/s) over ${clients.length} ` +
      `connection${clients.length === 1 ? '' : 's'}: ${result.ok} ok, ${result.refused} refused as expected ` +
      `(bad cards), ${result.unexpected} unexpected; latency p50 ${ms(percentile(latencies, 0.5))}, ` +
      `p99 ${ms(percentile(latencies, 0.99))}`,
  );
  if (result.unexpected) {
    console.error(`unexpected results, e.g.: ${firstErrors.join('; ')}`);
    process.exitCode = 1;
  }
}

main().catch((err) => {
  console.error(`load generator failed: ${err.stack || err}`);
  process.exit(1);
});

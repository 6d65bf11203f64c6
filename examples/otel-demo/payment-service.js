'use strict';
// A payment service in the style of the OpenTelemetry demo's: one gRPC method, Charge, that validates the card and
// returns a transaction id. It has no OpenTelemetry code of its own: run it with the SDK preloaded,
//   node --require otel-node-ebpf/register payment-service.js
// and the SDK reports what its sockets do, measured in the kernel.
//
// Environment: PORT (default 50051; 0 picks a free port), HOST (default 127.0.0.1).
// Prints "payment service listening on HOST:PORT" once it accepts calls.

const crypto = require('node:crypto');
const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const ACCEPTED_CARDS = ['visa', 'mastercard'];

/** The Luhn checksum: doubling every second digit from the right, the digit sum is a multiple of 10. */
function luhnValid(digits) {
  let total = 0;
  for (let i = 0; i < digits.length; i++) {
    let d = digits.charCodeAt(digits.length - 1 - i) - 48;
    if (i % 2 === 1) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    total += d;
  }
  return total % 10 === 0;
}

/** The card network, from the number's prefix (IIN ranges). */
function cardType(digits) {
  if (/^4/.test(digits)) return 'visa';
  const two = Number(digits.slice(0, 2));
  const four = Number(digits.slice(0, 4));
  if ((two >= 51 && two <= 55) || (four >= 2221 && four <= 2720)) return 'mastercard';
  if (two === 34 || two === 37) return 'amex';
  if (/^(6011|65|64[4-9])/.test(digits)) return 'discover';
  return 'unknown';
}

class ChargeRefused extends Error {}

/** Validates a ChargeRequest (proto field names) and returns a ChargeResponse; throws ChargeRefused. */
function charge(request, now = new Date()) {
  const amount = request.amount;
  if (!amount || !/^[A-Z]{3}$/.test(amount.currency_code || '')) {
    throw new ChargeRefused('amount.currency_code must be an ISO 4217 code such as USD');
  }
  const units = Number(amount.units || 0);
  const nanos = Number(amount.nanos || 0);
  if (units < 0 || nanos < 0 || nanos > 999_999_999 || (units === 0 && nanos === 0)) {
    throw new ChargeRefused(`invalid amount ${units}.${String(nanos).padStart(9, '0')} ${amount.currency_code}`);
  }

  const card = request.credit_card;
  if (!card) throw new ChargeRefused('credit_card is required');
  const digits = String(card.credit_card_number || '').replace(/[\s-]/g, '');
  if (!/^\d{12,19}$/.test(digits) || !luhnValid(digits)) {
    throw new ChargeRefused('Credit card info is invalid: the card number fails validation.');
  }
  const type = cardType(digits);
  if (!ACCEPTED_CARDS.includes(type)) {
    throw new ChargeRefused(`Sorry, we cannot process ${type} credit cards. Only VISA or MasterCard is accepted.`);
  }
  const month = Number(card.credit_card_expiration_month);
  const year = Number(card.credit_card_expiration_year);
  if (!(month >= 1 && month <= 12) || !(year > 0)) {
    throw new ChargeRefused(`invalid expiration date ${month}/${year}`);
  }
  // A card is valid through the last day of its expiration month.
  if (year * 12 + month < now.getFullYear() * 12 + (now.getMonth() + 1)) {
    throw new ChargeRefused(`The credit card (ending ${digits.slice(-4)}) expired on ${month}/${year}.`);
  }
  return { transaction_id: crypto.randomUUID() };
}

function main() {
  const definition = protoLoader.loadSync(path.join(__dirname, 'payment.proto'), {
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
  });
  const { oteldemo } = grpc.loadPackageDefinition(definition);
  const stats = { charged: 0, refused: 0 };

  const server = new grpc.Server();
  server.addService(oteldemo.PaymentService.service, {
    Charge(call, callback) {
      try {
        const response = charge(call.request);
        stats.charged++;
        callback(null, response);
      } catch (err) {
        if (!(err instanceof ChargeRefused)) throw err;
        stats.refused++;
        callback({ code: grpc.status.INVALID_ARGUMENT, details: err.message });
      }
    },
  });

  const host = process.env.HOST || '127.0.0.1';
  const port = process.env.PORT === undefined || process.env.PORT === '' ? 50051 : Number(process.env.PORT);
  server.bindAsync(`${host}:${port}`, grpc.ServerCredentials.createInsecure(), (err, boundPort) => {
    if (err) {
      console.error(`payment service: cannot listen on ${host}:${port}: ${err.message}`);
      process.exit(1);
    }
    console.log(`payment service listening on ${host}:${boundPort}`);
  });

  // Stop accepting calls and let the process end by itself, so that other SIGTERM handlers (the SDK's final export)
  // can finish their work. The timer (unref'd: it does not keep the process alive) ends it if something lingers.
  process.once('SIGTERM', () => {
    console.log(`payment service stopping: ${stats.charged} charged, ${stats.refused} refused`);
    server.tryShutdown(() => {});
    setTimeout(() => process.exit(0), 10_000).unref();
  });
}

if (require.main === module) main();

module.exports = { charge, cardType, luhnValid, ChargeRefused };

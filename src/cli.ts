#!/usr/bin/env node
/** `npx otel-node-ebpf doctor [--json]`. */
import { formatDoctor, runDoctor } from './doctor';

function main(argv: string[]): number {
  const [command, ...flags] = argv;
  if (command !== 'doctor') {
    process.stderr.write('usage: otel-node-ebpf doctor [--json]\n');
    return command === undefined || command === '--help' || command === '-h' ? 0 : 2;
  }
  const report = runDoctor();
  if (flags.includes('--json'))
    process.stdout.write(JSON.stringify(report, (_, v) => (typeof v === 'bigint' ? v.toString() : v), 2) + '\n');
  else process.stdout.write(formatDoctor(report) + '\n');
  return report.ok ? 0 : 1;
}

process.exitCode = main(process.argv.slice(2));

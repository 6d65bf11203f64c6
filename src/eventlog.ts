/**
 * The last few records of a ring buffer, numbered in the order the kernel wrote them. The DNS and TLS uprobes fire on
 * the main thread only, so their records come in the order that thread finished the lookups and handshakes; the span
 * processor (src/spans.ts) notes the number at a point in a connection's life and later takes the record that
 * belongs to that connection by its number, never by time.
 */
export class EventLog<T> {
  private readonly ring: (T | undefined)[];
  /** Records seen so far; the last one has this number. */
  seq = 0;

  constructor(private readonly capacity = 64) {
    this.ring = new Array(capacity);
  }

  push(e: T): void {
    this.seq++;
    this.ring[this.seq % this.capacity] = e;
  }

  /** Record number n (1-based), if it is still kept. */
  at(n: number): T | undefined {
    return n >= 1 && n <= this.seq && n > this.seq - this.capacity ? this.ring[n % this.capacity] : undefined;
  }
}

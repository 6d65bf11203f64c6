/**
 * What the uprobe collectors (DNS, TLS, thread pool) share: their probe set and ring buffer, their hits as the budget
 * sees them, detaching one measurement without stalling the application, and stopping.
 */
import { DetachedCounts } from './budget';
import type { UprobeCollector, UprobeHits } from './budget';
import type { NativeRingBuffer } from './native';
import type { ProbeRunStats, ProbeSet, ProbeStatus } from './probes';

export abstract class UprobeCollectorBase implements UprobeCollector {
  protected probes?: ProbeSet;
  protected ring?: NativeRingBuffer;
  protected readonly detachedCounts = new DetachedCounts();

  /** Per measurement, the hits its programs counted (in the object's .bss). */
  protected abstract countedHits(): Map<string, UprobeHits[]>;

  status(): ProbeStatus[] {
    return this.probes?.status() ?? [];
  }

  runStats(): Map<string, ProbeRunStats> {
    return this.probes?.runStats() ?? new Map();
  }

  uprobeHits(): Map<string, UprobeHits[]> {
    return this.detachedCounts.apply(this.countedHits());
  }

  detach(name: string, reason: string): boolean {
    if (!this.probes?.isAttached(name)) return false;
    this.ring?.consume(); // the records until now count; those of the background teardown do not
    this.detachedCounts.freeze(name, this.countedHits().get(name));
    return this.probes.detach(name, reason);
  }

  stop(): void {
    this.ring?.close();
    this.ring = undefined;
    this.probes?.close();
    this.probes = undefined;
  }
}

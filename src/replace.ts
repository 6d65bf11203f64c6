/**
 * Replaces `target[name]` by `make(original)`, keeping the property's enumerability, and without shimmer's markers:
 * OpenTelemetry's InstrumentationBase#_wrap unwraps any method that carries them before it wraps, so an
 * instrumentation enabled after this one (instrumentation-grpc, say) would silently undo ours, and ours its. Returns
 * the undo, which restores the original only while ours is still the outermost.
 */
export function replace<T extends object, K extends keyof T>(target: T, name: K, make: (original: T[K]) => T[K]): () => void {
  const original = target[name];
  const wrapped = make(original);
  const enumerable = Object.getOwnPropertyDescriptor(target, name)?.enumerable ?? false;
  Object.defineProperty(target, name, { value: wrapped, writable: true, configurable: true, enumerable });
  return () => {
    if (target[name] === wrapped) Object.defineProperty(target, name, { value: original, writable: true, configurable: true, enumerable });
  };
}

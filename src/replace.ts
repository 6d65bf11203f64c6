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

/**
 * Replaces the function `target[name]` by one that calls the original and gives its result to `after` (with the
 * arguments) while ours is active: what `after` returns is what the caller gets. Returns the undo: it restores the
 * original while ours is the outermost, and makes ours inert when a later wrapper keeps it in place.
 */
function passCalls<T extends object, K extends keyof T>(target: T, name: K, after: (args: unknown[], result: unknown) => unknown): () => void {
  let active = true;
  const restore = replace(target, name, original => {
    const call = original as (...a: unknown[]) => unknown;
    const passed = function (this: unknown, ...args: unknown[]) {
      const result = call.apply(this, args);
      return active ? after(args, result) : result;
    };
    Object.defineProperty(passed, 'name', { value: call.name }); // tls.connect.name is still 'connect'
    return passed as T[K];
  });
  return () => {
    active = false;
    restore();
  };
}

/**
 * Replaces the function `target[name]` by one that passes every call through and then shows `observe` the arguments
 * and the result. `observe` never changes what the caller gets: an error it throws goes to `onError`. Returns the
 * undo (passCalls).
 */
export function observeCalls<T extends object, K extends keyof T>(
  target: T,
  name: K,
  observe: (args: unknown[], result: unknown) => void,
  onError: (err: unknown) => void,
): () => void {
  return passCalls(target, name, (args, result) => {
    try {
      observe(args, result);
    } catch (err) {
      onError(err);
    }
    return result;
  });
}

/**
 * observeCalls for a function that returns a promise: `observe` sees the arguments of each call and may return a
 * reaction to the value the promise resolves to. The caller then gets a promise that settles as the original one,
 * right after that reaction. A rejection is not handled here: it reaches the caller's promise unchanged, and one that
 * the application leaves unhandled is reported as unhandled, as without the SDK (a rejection handler of our own on
 * the original would have taken it for handled).
 */
export function observeResolutions<T extends object, K extends keyof T>(
  target: T,
  name: K,
  observe: (args: unknown[]) => ((value: unknown) => void) | undefined,
  onError: (err: unknown) => void,
): () => void {
  return passCalls(target, name, (args, result) => {
    if (!(result instanceof Promise)) return result;
    let react: ((value: unknown) => void) | undefined;
    try {
      react = observe(args);
    } catch (err) {
      onError(err);
    }
    if (!react) return result;
    return result.then(value => {
      try {
        react(value);
      } catch (err) {
        onError(err);
      }
      return value;
    });
  });
}

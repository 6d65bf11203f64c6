/**
 * The SDK's own file I/O, kept out of the application's file.io. While the SDK's code runs on the main thread (its
 * start, each step of a collection, an export's serialisation, the statistics windows' timer), bpf/files.bpf.c does
 * not track the files opened there: BTF, the SDK's modules and BPF objects, the sysctls it reads. Otherwise they would
 * be the first paths of a process's file metrics, and take the series that file.io keeps for the application's.
 *
 * The flag is a word of a BPF array that the files collector maps into this process's memory (sdk_busy): setting it
 * costs a store, no system call. The addon's own threads are left out by their names (native/http.cc: "otel-ebpf-..."),
 * on the kernel side alone. Work that the SDK starts on threads it shares with the application (the thread pool's fs
 * calls of OpenTelemetry's resource detectors) is not covered: the kernel side cannot tell it from the application's.
 */
const flags = new Set<Uint32Array>();
let depth = 0;

function publish(): void {
  for (const f of flags) f[0] = depth;
}

/** Runs `fn` as the SDK's own work: files it opens on this thread are not the application's. */
export function ownIo<T>(fn: () => T): T {
  depth++;
  publish();
  try {
    return fn();
  } finally {
    depth--;
    publish();
  }
}

/** A collector's flag (bpf/files.bpf.c sdk_busy, mapped): it follows ownIo from now on. Returns its removal. */
export function followOwnIo(flag: Uint32Array): () => void {
  flag[0] = depth;
  flags.add(flag);
  return () => {
    flags.delete(flag);
  };
}

/**
 * Symbols of the running node binary, resolved once for every uprobe: the symbol tables of a node binary are 15-20
 * MB, and libbpf would read them again for each attach (tens of ms each). From `.dynsym` (exported functions,
 * looked up in its GNU hash table where it has one) and `.symtab` (static functions included: libuv's
 * uv__getaddrinfo_done), like libbpf; ELF64 little-endian only.
 *
 * The first instruction of each function is read too: it decides what a uprobe hit costs (src/budget.ts).
 */
import * as fs from 'fs';

export interface ElfSymbol {
  name: string;
  /** File offset of the function: what a uprobe attaches to. */
  offset: number;
  /** Its link-time virtual address (st_value): see runtimeAddress(). */
  vaddr: bigint;
  /** Whether the first instruction is one the x86-64 kernel emulates at the breakpoint (push), so no single-step. */
  emulated: boolean;
}

const SHT_SYMTAB = 2;
const SHT_DYNSYM = 11;
const SHT_GNU_HASH = 0x6ffffff6;
const STT_FUNC = 2;
const STT_GNU_IFUNC = 10;
const STB_LOCAL = 0;

interface Section {
  type: number;
  addr: bigint;
  offset: number;
  size: number;
  link: number;
  entsize: number;
}

function readAt(fd: number, offset: number, length: number, into: Buffer = Buffer.allocUnsafe(length)): Buffer {
  let done = 0;
  while (done < length) {
    const n = fs.readSync(fd, into, done, length - done, offset + done);
    if (n === 0) break;
    done += n;
  }
  return into.subarray(0, done);
}

/**
 * The tables are read through one small buffer, a chunk at a time: read whole, the string and symbol tables of a node
 * binary (15-20 MB) would stay in the heap as freed-but-kept memory long after start.
 */
const CHUNK = 1 << 20;

/** Every position of each wanted name (NUL-terminated) in a string table, read chunk by chunk. */
function findStrings(fd: number, table: Section, wanted: Map<string, Buffer>, chunk: Buffer): Map<number, string> {
  const at = new Map<number, string>();
  let overlap = 0;
  for (const w of wanted.values()) overlap = Math.max(overlap, w.length - 1);
  for (let start = 0; start < table.size; start += CHUNK - overlap) {
    const b = readAt(fd, table.offset + start, Math.min(CHUNK, table.size - start), chunk);
    for (const [name, w] of wanted) {
      // also inside a longer string: linkers merge common tails
      for (let p = b.indexOf(w); p >= 0; p = b.indexOf(w, p + 1)) at.set(start + p, name);
    }
    if (start + b.length >= table.size) break;
  }
  return at;
}

/** A function symbol as the tables below keep it. */
interface Found {
  value: bigint;
  shndx: number;
  local: boolean;
}

/** The symbol at byte `o` of `syms` if it is a function defined in a section of the file. */
function functionAt(syms: Buffer, o: number, sectionCount: number): Found | undefined {
  const info = syms[o + 4];
  const kind = info & 0xf;
  const shndx = syms.readUInt16LE(o + 6);
  if ((kind !== STT_FUNC && kind !== STT_GNU_IFUNC) || shndx === 0 || shndx >= sectionCount) return undefined;
  return { value: syms.readBigUInt64LE(o + 8), shndx, local: info >> 4 === STB_LOCAL };
}

/** The GNU hash of a symbol name (the dynamic linker's dl_new_hash). */
function gnuHash(name: Buffer): number {
  let h = 5381;
  for (const c of name) h = (Math.imul(h, 33) + c) >>> 0;
  return h;
}

/**
 * The exported functions among `names`, looked up in the GNU hash table of `.dynsym` (`.gnu.hash`) as the dynamic
 * linker does: a few small reads per name instead of a scan of `.dynstr` for each (5 MB in a node binary).
 */
function lookUpGnuHash(fd: number, hash: Section, dynsym: Section, dynstr: Section, names: string[], sectionCount: number): Map<string, Found> {
  const found = new Map<string, Found>();
  const table = readAt(fd, hash.offset, hash.size);
  if (table.length < 16) return found;
  const nbuckets = table.readUInt32LE(0);
  const symoffset = table.readUInt32LE(4);
  const bloomWords = table.readUInt32LE(8);
  const buckets = 16 + bloomWords * 8;
  const chains = buckets + nbuckets * 4;
  if (nbuckets === 0 || chains > table.length) return found;
  for (const name of names) {
    const bytes = Buffer.from(name + '\0', 'latin1');
    const h = gnuHash(bytes.subarray(0, bytes.length - 1));
    for (let i = table.readUInt32LE(buckets + (h % nbuckets) * 4); i >= symoffset; i++) {
      const at = chains + (i - symoffset) * 4;
      if (at + 4 > table.length) break;
      const chain = table.readUInt32LE(at);
      if ((chain | 1) === (h | 1)) {
        const sym = readAt(fd, dynsym.offset + i * 24, 24);
        const nameAt = sym.readUInt32LE(0);
        if (readAt(fd, dynstr.offset + nameAt, bytes.length).equals(bytes)) {
          const f = functionAt(sym, 0, sectionCount);
          if (f) found.set(name, f);
          break;
        }
      }
      if (chain & 1) break; // the bucket's last symbol
    }
  }
  return found;
}

/**
 * push %reg (0x50-0x57, with a REX prefix 0x41 for r8-r15): the instruction libuv's and most functions start with
 * (`push %rbp`) and the one the calibration function starts with. Everything else counts as single-stepped, which
 * over-estimates the few others the kernel also emulates (calls, jumps).
 */
export function isEmulatedFirstInstruction(b: Buffer): boolean {
  if (process.arch !== 'x64' || b.length < 2) return false;
  return (b[0] >= 0x50 && b[0] <= 0x57) || (b[0] === 0x41 && b[1] >= 0x50 && b[1] <= 0x57);
}

/**
 * Names the collectors will ask for (their modules declare them when loaded): the first request for a file resolves
 * them all in the same scan, so that the DNS, TLS and thread-pool collectors read the node binary's tables once.
 */
const declared = new Set<string>();

export function declareSymbols(names: readonly string[]): void {
  for (const n of names) declared.add(n);
}

/** Per file: name -> symbol, or null if the file lacks it. The node binary does not change under a running process. */
const cache = new Map<string, Map<string, ElfSymbol | null>>();

/**
 * Resolves function symbols of an ELF file. Names that are missing are absent from the result; a name defined more
 * than once at different addresses resolves to its global definition (libbpf refuses two non-weak ones; so do we).
 */
export function resolveSymbols(file: string, names: readonly string[]): Map<string, ElfSymbol> {
  let known = cache.get(file);
  if (!known) cache.set(file, (known = new Map()));
  if (names.some(n => !known!.has(n))) {
    const wanted = [...new Set([...names, ...declared])].filter(n => !known!.has(n));
    const found = readSymbols(file, wanted);
    for (const n of wanted) known.set(n, found.get(n) ?? null);
  }
  const out = new Map<string, ElfSymbol>();
  for (const n of names) {
    const s = known.get(n);
    if (s) out.set(n, s);
  }
  return out;
}

function readSymbols(file: string, names: string[]): Map<string, ElfSymbol> {
  const out = new Map<string, ElfSymbol>();
  const fd = fs.openSync(file, 'r');
  try {
    const eh = readAt(fd, 0, 64);
    if (eh.length < 64 || eh.readUInt32BE(0) !== 0x7f454c46 || eh[4] !== 2 || eh[5] !== 1)
      throw new Error(`${file} is not a 64-bit little-endian ELF file`);
    const shoff = Number(eh.readBigUInt64LE(0x28));
    const shentsize = eh.readUInt16LE(0x3a);
    const shnum = eh.readUInt16LE(0x3c);
    const sh = readAt(fd, shoff, shentsize * shnum);
    const sections: Section[] = [];
    for (let i = 0; i < shnum; i++) {
      const o = i * shentsize;
      sections.push({
        type: sh.readUInt32LE(o + 4),
        addr: sh.readBigUInt64LE(o + 16),
        offset: Number(sh.readBigUInt64LE(o + 24)),
        size: Number(sh.readBigUInt64LE(o + 32)),
        link: sh.readUInt32LE(o + 40),
        entsize: Number(sh.readBigUInt64LE(o + 56)),
      });
    }
    const chunk = Buffer.allocUnsafe(CHUNK);
    // .dynsym first: smaller, and it has the exported functions; .symtab only for what is left (static functions).
    for (const type of [SHT_DYNSYM, SHT_SYMTAB]) {
      for (const symtab of sections.filter(s => s.type === type)) {
        const wanted = new Map(names.filter(n => !out.has(n)).map(n => [n, Buffer.from(n + '\0', 'latin1')]));
        if (wanted.size === 0) break;
        const strtab = sections[symtab.link];
        if (!strtab || symtab.entsize !== 24) continue;
        const hash = sections.find(h => h.type === SHT_GNU_HASH && sections[h.link] === symtab);
        const found = hash ? lookUpGnuHash(fd, hash, symtab, strtab, [...wanted.keys()], sections.length) : new Map<string, Found>();
        const at = hash ? new Map<number, string>() : findStrings(fd, strtab, wanted, chunk);
        const perChunk = Math.floor(CHUNK / 24) * 24;
        for (let start = 0; at.size > 0 && start < symtab.size; start += perChunk) {
          const syms = readAt(fd, symtab.offset + start, Math.min(perChunk, symtab.size - start), chunk);
          for (let o = 0; o + 24 <= syms.length; o += 24) {
            const name = at.get(syms.readUInt32LE(o));
            if (name === undefined) continue;
            const f = functionAt(syms, o, sections.length);
            if (!f) continue;
            const prev = found.get(name);
            if (!prev || (prev.local && !f.local)) found.set(name, f);
          }
        }
        for (const [name, s] of found) {
          const sec = sections[s.shndx];
          const offset = Number(s.value - sec.addr) + sec.offset;
          out.set(name, { name, offset, vaddr: s.value, emulated: isEmulatedFirstInstruction(readAt(fd, offset, 2)) });
        }
      }
    }
  } finally {
    fs.closeSync(fd);
  }
  return out;
}

const ET_EXEC = 2;

/**
 * Where a function of `file` is in this process's memory, i.e. the value of a pointer to it: its link address in a
 * non-PIE executable (ET_EXEC, like the official node binaries), else that plus the address `file` is mapped at
 * (/proc/self/maps, the mapping of file offset 0). undefined if the file is not mapped into this process.
 */
export function runtimeAddress(file: string, sym: ElfSymbol): bigint | undefined {
  const fd = fs.openSync(file, 'r');
  let type: number;
  try {
    type = readAt(fd, 0, 18).readUInt16LE(16);
  } finally {
    fs.closeSync(fd);
  }
  if (type === ET_EXEC) return sym.vaddr;
  const real = fs.realpathSync(file);
  for (const line of fs.readFileSync('/proc/self/maps', 'utf8').split('\n')) {
    const m = /^([0-9a-f]+)-[0-9a-f]+ \S+ ([0-9a-f]+) \S+ \d+\s+(.*)$/.exec(line);
    if (m && BigInt('0x' + m[2]) === 0n && m[3] === real) return BigInt('0x' + m[1]) + sym.vaddr;
  }
  return undefined;
}

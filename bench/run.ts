/**
 * Bench harness: `npm run bench [-- --json out.json] [--filter <substring>] [--quick]`.
 *
 * Runs every `bench/*.bench.ts` module (each exports `run(opts): Promise<Row[]>`), prints one table
 * and optionally writes JSON with the rows plus machine info (CPU model, cores, load average before
 * and after, native.info()). `--filter` picks modules whose file name contains the substring; a
 * module that exports `filterCases = true` is also run when the name does not match, with
 * `opts.filter` set, and only its rows whose name or shape contain the substring are kept.
 * Timings are wall clock on a possibly shared machine: the load average is recorded with them.
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export interface Row {
  name: string;
  shape: string;
  value: number;
  unit: string;
  compare?: { name: string; value: number };
  /** value / compare.value */
  ratio?: number;
  note?: string;
}

export interface BenchOptions {
  /** Fewer repetitions and cases (smoke runs). */
  quick: boolean;
  /** Set only for modules exporting `filterCases = true` whose file name did not match. */
  filter?: string;
}

interface BenchModule {
  run(opts: BenchOptions): Promise<Row[]>;
  filterCases?: boolean;
}

interface Args {
  json?: string;
  filter?: string;
  quick: boolean;
}

function parseArgs(argv: string[]): Args {
  const a: Args = { quick: false };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    if (k === '--quick') a.quick = true;
    else if (k === '--json' || k === '--filter') {
      const v = argv[++i];
      if (v === undefined || v.startsWith('--')) throw new Error(`${k} needs a value`);
      if (k === '--json') a.json = v;
      else a.filter = v;
    } else if (k === '--help' || k === '-h') {
      console.log('usage: npm run bench -- [--json <file>] [--filter <substring>] [--quick]');
      process.exit(0);
    } else throw new Error(`unknown option ${k} (try --help)`);
  }
  return a;
}

/** CPU model name, plus family/model/stepping from /proc/cpuinfo (VMs often mask the name). */
function cpuModel(): string {
  try {
    const info = readFileSync('/proc/cpuinfo', 'utf8');
    const field = (k: string) => new RegExp(`^${k}\\s*:\\s*(.+)$`, 'm').exec(info)?.[1].trim();
    const name = field('model name');
    if (name) {
      const fms = [field('cpu family'), field('model'), field('stepping')];
      return fms.every((x) => x !== undefined) ? `${name} (family ${fms[0]} model ${fms[1]} stepping ${fms[2]})` : name;
    }
  } catch {
    // not Linux: fall through to os.cpus()
  }
  return cpus()[0]?.model ?? 'unknown';
}

/** A figure to 3–4 significant digits ('' for a missing or non-finite one). */
export function fmt(v: number | undefined): string {
  if (v === undefined || !Number.isFinite(v)) return '';
  const a = Math.abs(v);
  return a >= 100 ? v.toFixed(1) : a >= 1 ? v.toFixed(2) : v.toPrecision(3);
}

function printTable(rows: (Row & { bench: string })[]): void {
  if (rows.length === 0) {
    console.log('(no rows)');
    return;
  }
  const head = ['bench', 'name', 'shape', 'value', 'unit', 'compare', 'cmp value', 'ratio', 'note'];
  const body = rows.map((r) => [
    r.bench, r.name, r.shape, fmt(r.value), r.unit, r.compare?.name ?? '', fmt(r.compare?.value),
    r.ratio === undefined ? '' : r.ratio.toFixed(2), r.note ?? '',
  ]);
  const w = head.map((h, i) => Math.max(h.length, ...body.map((b) => (i === 8 ? 0 : b[i].length))));
  const line = (cells: string[]) => cells.map((c, i) => (i === 8 ? c : c.padEnd(w[i]))).join('  ').trimEnd();
  console.log(line(head));
  console.log(line(w.map((n) => '-'.repeat(n))));
  for (const b of body) console.log(line(b));
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const here = dirname(fileURLToPath(import.meta.url));
  const files = readdirSync(here).filter((f) => f.endsWith('.bench.ts')).sort();
  const { native } = await import('../lib/native.js');
  const load0 = loadavg();
  const machine = {
    cpu: cpuModel(),
    cores: cpus().length,
    platform: `${process.platform}-${process.arch}`,
    node: process.version,
    native: native.info(),
    gemmIsa: native.gemmIsa(),
    loadavgBefore: load0,
    loadavgAfter: [] as number[],
  };
  console.log(`vitrim bench: ${machine.cpu}, ${machine.cores} cores, ${machine.native.threads} threads, isa ${machine.native.isa}, ` +
    `node ${machine.node}; load average ${load0.map((x) => x.toFixed(2)).join(' ')}`);

  const results: { bench: string; seconds: number; rows: Row[]; error?: string }[] = [];
  let failed = false;
  for (const f of files) {
    const bench = basename(f, '.bench.ts');
    const nameMatches = !args.filter || bench.includes(args.filter);
    const mod = (await import(pathToFileURL(join(here, f)).href)) as BenchModule;
    if (!nameMatches && !mod.filterCases) continue;
    const opts: BenchOptions = { quick: args.quick, filter: nameMatches ? undefined : args.filter };
    console.log(`\n# ${bench}${opts.filter ? ` (cases matching '${opts.filter}')` : ''}`);
    const t0 = performance.now();
    try {
      let rows = await mod.run(opts);
      if (opts.filter) rows = rows.filter((r) => `${r.name} ${r.shape}`.includes(opts.filter!));
      const seconds = (performance.now() - t0) / 1000;
      results.push({ bench, seconds, rows });
      printTable(rows.map((r) => ({ ...r, bench })));
    } catch (e) {
      failed = true;
      const msg = (e as Error).stack ?? String(e);
      results.push({ bench, seconds: (performance.now() - t0) / 1000, rows: [], error: msg });
      console.error(`${bench} failed: ${msg}`);
    }
  }
  machine.loadavgAfter = loadavg();
  // which GPU the cuda rows ran on (bench/targets.ts prints it); only now, so the cpu-only modules
  // do not load the cuda backend
  const backends = native.backends();
  console.log(`\nload average after: ${machine.loadavgAfter.map((x) => x.toFixed(2)).join(' ')}`);
  if (args.json) {
    const out = { date: new Date().toISOString(), argv: process.argv.slice(2), machine: { ...machine, backends }, results };
    writeFileSync(args.json, JSON.stringify(out, null, 2) + '\n');
    console.log(`wrote ${args.json}`);
  }
  if (failed) process.exitCode = 1;
}

// Bench modules import this file's types only; run main only when executed as the script.
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((e) => {
    console.error((e as Error).message);
    process.exitCode = 1;
  });
}

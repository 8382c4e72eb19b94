// The README's TypeScript snippets type-check against the library as it is: each ```ts block becomes
// the body of a function of its own, whose parameters are the block's free variables (declared
// below, per block), with `vitrim` mapped to lib/index.ts. A renamed function, a changed option or
// signature in the library that the README still shows fails here. (Type-checked, not run: the
// snippets load checkpoints and train on datasets.)
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import * as vitrim from '../lib/index.js';

const root = join(__dirname, '..');
const dir = mkdtempSync(join(tmpdir(), 'vitrim-readme-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// The free variables of each block, in order of the blocks in the README.
const FREE: string[] = [
  'x: Tensor, labels: Tensor, testSet: data.Dataset',
  '',
  'data: Float32Array, B: number, model: VisionTransformer, policy: policies.AdaVitPolicy, n: number, seed: number',
  'model: VisionTransformer, x: Tensor, labels: Tensor',
  'model: VisionTransformer, imageFloat32: Float32Array, cudaTensor: Tensor',
];

it('every ```ts block of the README type-checks against the library', () => {
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  const blocks = [...readme.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]);
  expect(blocks.length, 'a README block was added or removed: update FREE').toBe(FREE.length);
  const imports = new Set<string>();
  const bodies = blocks.map((b, i) => {
    const body = b.replace(/^import \{([^}]*)\} from 'vitrim';$/gm, (_, names: string) => {
      for (const n of names.split(',')) if (n.trim()) imports.add(n.trim());
      return '';
    });
    return `export async function block${i + 1}(${FREE[i]}): Promise<void> {\n${body}}\n`;
  });
  // a block after the first may use what an earlier one imported: every export the blocks name
  const all = blocks.join('\n');
  for (const n of Object.keys(vitrim)) if (new RegExp(`\\b${n}\\b`).test(all)) imports.add(n);
  for (const n of ['Tensor', 'VisionTransformer', 'policies', 'data']) imports.add(n);
  const src = [
    `import { ${[...imports].join(', ')} } from 'vitrim';`,
    ...bodies,
  ].join('\n');
  writeFileSync(join(dir, 'readme.ts'), src);
  writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify({
    compilerOptions: {
      target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, noEmit: true,
      noUnusedLocals: false, types: ['node'], typeRoots: [join(root, 'node_modules', '@types')],
      lib: ['ES2022', 'ESNext.Disposable'],
      paths: { vitrim: [join(root, 'lib', 'index.ts')] },
    },
    files: ['readme.ts'],
  }));
  const tsc = spawnSync(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', dir], { encoding: 'utf8' });
  expect(tsc.status, `${tsc.stdout}${tsc.stderr}\n--- generated from README.md:\n${src}`).toBe(0);
}, 120_000);

// The options the README shows for the CLI (its command lines and the CLI section) exist: each
// `--option` on a line that runs `vitrim <command>` (or continues one in the CLI section) appears in
// that command's --help.
it("every CLI option the README names is one the command's --help lists", () => {
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  const used = new Map<string, Set<string>>();
  let cmd: string | null = null;
  for (const line of readme.split('\n')) {
    const m = /^(?:npx )?vitrim (info|train|eval|explain)\b/.exec(line.trim());
    if (m) cmd = m[1];
    else if (!/^\s{6,}\[?--/.test(line)) cmd = null; // a continuation is indented and starts with an option
    if (!cmd) continue;
    for (const [opt] of line.matchAll(/--[a-z][a-z-]*/g)) {
      if (!used.has(cmd)) used.set(cmd, new Set());
      used.get(cmd)!.add(opt);
    }
  }
  expect([...used.keys()].sort()).toEqual(['eval', 'explain', 'train']);
  for (const [c, opts] of used) {
    const help = spawnSync(process.execPath, ['--import', 'tsx', join(root, 'lib/cli.ts'), c, '--help'], { cwd: root, encoding: 'utf8' });
    expect(help.status, help.stderr).toBe(0);
    for (const o of opts) expect(help.stdout, `vitrim ${c} ${o}`).toMatch(new RegExp(`${o}(?![a-z-])`));
  }
}, 120_000);

// The README lists the typed errors a user catches; the package exports them, and not the internal
// helper that maps native errors onto them (errors.ts's rethrow, once exported through a star).
it('exports the typed errors the README names, and no internal helper', () => {
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  for (const n of ['ShapeError', 'DTypeError', 'IndexError', 'DisposedError', 'ArgumentError', 'IOError', 'VitrimError']) {
    expect(readme, n).toContain(`\`${n}\``);
    expect(typeof (vitrim as Record<string, unknown>)[n], n).toBe('function');
  }
  expect(Object.keys(vitrim)).not.toContain('rethrow');
});

#!/usr/bin/env node
// Rewrites a .cu file into C++ that g++ compiles against native/cuda/emu/emu.h (the CPU emulation
// used to run test/cuda without a GPU): kernel launches `k<<<cfg>>>(args)` become
// `::emu::launch(k, ::emu::Cfg(cfg), args)`, and `extern __shared__ T name[];` becomes a pointer to
// the block's dynamic shared memory. Usage: cuda-emu-preprocess.mjs in.cu out.cpp
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';

const [, , input, output] = process.argv;
if (!input || !output) {
  console.error('usage: cuda-emu-preprocess.mjs in.cu out.cpp');
  process.exit(2);
}
let src = readFileSync(input, 'utf8');

// extern __shared__ [alignas(N)|__align__(N)] T name[];  (also with the alignment first)
src = src.replace(
  /(?:alignas\(\s*\d+\s*\)\s*|__align__\(\s*\d+\s*\)\s*)?extern\s+__shared__\s+(?:alignas\(\s*\d+\s*\)\s*|__align__\(\s*\d+\s*\)\s*)?([A-Za-z_][\w:<>, ]*?)\s+([A-Za-z_]\w*)\s*\[\s*\]\s*;/g,
  (_, type, name) => `${type}* ${name} = reinterpret_cast<${type}*>(::emu::dyn_smem());`,
);

function matchBack(s, end, open, close) {
  // s[end] === close; returns the index of the matching open.
  let depth = 0;
  for (let i = end; i >= 0; i--) {
    if (s[i] === close) depth++;
    else if (s[i] === open && --depth === 0) return i;
  }
  throw new Error(`unbalanced ${open}${close}`);
}
function matchFwd(s, start, open, close) {
  let depth = 0;
  for (let i = start; i < s.length; i++) {
    if (s[i] === open) depth++;
    else if (s[i] === close && --depth === 0) return i;
  }
  throw new Error(`unbalanced ${open}${close}`);
}

// `__launch_bounds__(N[, M]) name(params) {` -> `name(params) { ::emu::launch_bounds(N[, M]);`: the
// emulation checks each launch's block size against the bound a GPU enforces. A declaration (`;`
// before `{`) just loses the attribute. Line numbers are kept (the attribute is blanked in place).
{
  let res = '';
  let from = 0;
  for (;;) {
    const at = src.indexOf('__launch_bounds__', from);
    if (at < 0) break;
    const open = src.indexOf('(', at);
    const close = matchFwd(src, open, '(', ')');
    const bounds = src.slice(open + 1, close);
    const paramsOpen = src.indexOf('(', close + 1);
    const paramsClose = matchFwd(src, paramsOpen, '(', ')');
    let b = paramsClose + 1;
    while (/\s/.test(src[b])) b++;
    res += src.slice(from, at) + src.slice(at, close + 1).replace(/[^\n]/g, ' ');
    if (src[b] === '{') {
      res += src.slice(close + 1, b + 1) + ` ::emu::launch_bounds(${bounds.replace(/\n/g, ' ')});`;
      from = b + 1;
    } else from = close + 1;
  }
  src = res + src.slice(from);
}

let out = '';
let pos = 0;
for (;;) {
  const at = src.indexOf('<<<', pos);
  if (at < 0) break;
  // callee: identifier (with ::) optionally followed by <template args>
  let e = at - 1;
  while (/\s/.test(src[e])) e--;
  let calleeStart;
  if (src[e] === '>') {
    const lt = matchBack(src, e, '<', '>');
    let b = lt - 1;
    while (/[\w:]/.test(src[b])) b--;
    calleeStart = b + 1;
  } else {
    let b = e;
    while (/[\w:]/.test(src[b])) b--;
    calleeStart = b + 1;
  }
  const callee = src.slice(calleeStart, e + 1);
  const cfgEnd = src.indexOf('>>>', at);
  if (cfgEnd < 0) throw new Error(`${input}: '<<<' without '>>>'`);
  const cfg = src.slice(at + 3, cfgEnd);
  let p = cfgEnd + 3;
  while (/\s/.test(src[p])) p++;
  if (src[p] !== '(') throw new Error(`${input}: expected '(' after a launch configuration`);
  const close = matchFwd(src, p, '(', ')');
  const args = src.slice(p + 1, close).trim();
  const call = `::emu::launch(${callee}, ::emu::Cfg(${cfg})${args ? `, ${args}` : ''})`;
  // the newlines the rewrite dropped (around <<< >>> and the trimmed arguments), so that the
  // compiler's line numbers after a multi-line launch still match the .cu file
  const lines = (t) => t.split('\n').length - 1;
  out += src.slice(pos, calleeStart) + call + '\n'.repeat(lines(src.slice(calleeStart, close + 1)) - lines(call));
  pos = close + 1;
}
out += src.slice(pos);
mkdirSync(dirname(resolve(output)), { recursive: true });
writeFileSync(output, `#line 1 "${resolve(input)}"\n` + out);

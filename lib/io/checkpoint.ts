/**
 * Model checkpoints as safetensors. Our own files store timm's parameter names in float32 plus the
 * model config as JSON in `__metadata__["vitrim.config"]`. Foreign files are accepted as:
 * - timm (`model.safetensors` of a timm ViT/DeiT): names are already ours;
 * - Hugging Face transformers ViT/DeiT (`vit.` / `deit.` prefixes, separate query/key/value): mapped
 *   to timm names, q/k/v concatenated into `attn.qkv`.
 * Floating dtypes (F32, F16, BF16, F64) are converted to float32.
 */
import { existsSync, promises as fsp, statSync } from 'node:fs';
import { join } from 'node:path';
import { ArgumentError } from '../errors.js';
import { readSafetensors, serializeSafetensors, type SafetensorsFile, type StTensorIn } from './safetensors.js';

export interface StateEntry {
  shape: number[];
  data: Float32Array;
}
export type StateDict = Map<string, StateEntry>;

export const CONFIG_KEY = 'vitrim.config';

const FLOAT = new Set(['F32', 'F16', 'BF16', 'F64']);

/** Hugging Face transformers name → timm name (q/k/v handled separately). */
function hfToTimm(name: string): string | null {
  const m = name.match(/^(?:vit|deit)\.(.*)$/);
  const rest = m ? m[1] : name;
  const direct: Record<string, string> = {
    'embeddings.cls_token': 'cls_token',
    'embeddings.position_embeddings': 'pos_embed',
    'embeddings.patch_embeddings.projection.weight': 'patch_embed.proj.weight',
    'embeddings.patch_embeddings.projection.bias': 'patch_embed.proj.bias',
    'layernorm.weight': 'norm.weight',
    'layernorm.bias': 'norm.bias',
    'classifier.weight': 'head.weight',
    'classifier.bias': 'head.bias',
  };
  if (direct[rest]) return direct[rest];
  const l = rest.match(/^encoder\.layer\.(\d+)\.(.*)$/);
  if (!l) return null;
  const map: Record<string, string> = {
    'layernorm_before.weight': 'norm1.weight',
    'layernorm_before.bias': 'norm1.bias',
    'layernorm_after.weight': 'norm2.weight',
    'layernorm_after.bias': 'norm2.bias',
    'attention.output.dense.weight': 'attn.proj.weight',
    'attention.output.dense.bias': 'attn.proj.bias',
    'intermediate.dense.weight': 'mlp.fc1.weight',
    'intermediate.dense.bias': 'mlp.fc1.bias',
    'output.dense.weight': 'mlp.fc2.weight',
    'output.dense.bias': 'mlp.fc2.bias',
  };
  return map[l[2]] ? `blocks.${l[1]}.${map[l[2]]}` : null;
}

function isHuggingFace(names: string[]): boolean {
  return names.some((n) => /^(vit|deit)\.(embeddings|encoder)\./.test(n) || /^encoder\.layer\.\d+\./.test(n));
}

function entriesOf(f: SafetensorsFile, path: string): StateDict {
  const raw: StateDict = new Map();
  for (const [name, e] of f.entries) {
    if (!FLOAT.has(e.dtype)) continue; // integer buffers (e.g. position ids) are not parameters
    raw.set(name, { shape: e.shape, data: Float32Array.from(f.getFloat32(name)) });
  }
  const names = [...raw.keys()];
  if (!isHuggingFace(names)) return raw;
  if (names.some((n) => n.includes('distillation'))) {
    throw new ArgumentError(`${path}: distilled DeiT checkpoints (distillation token and head) are not supported; use the non-distilled model`);
  }
  const out: StateDict = new Map();
  const qkv = new Map<string, { q?: StateEntry; k?: StateEntry; v?: StateEntry }>();
  for (const [name, e] of raw) {
    const a = name.match(/^(?:(?:vit|deit)\.)?encoder\.layer\.(\d+)\.attention\.attention\.(query|key|value)\.(weight|bias)$/);
    if (a) {
      const key = `blocks.${a[1]}.attn.qkv.${a[3]}`;
      const slot = qkv.get(key) ?? {};
      slot[a[2][0] as 'q' | 'k' | 'v'] = e;
      qkv.set(key, slot);
      continue;
    }
    const t = hfToTimm(name);
    if (t === null) {
      out.set(name, e); // reported as unexpected by a strict load
      continue;
    }
    out.set(t, e);
  }
  for (const [key, s] of qkv) {
    if (!s.q || !s.k || !s.v) throw new ArgumentError(`${path}: ${key}: query, key and value must all be present`);
    if (s.k.shape.join() !== s.q.shape.join() || s.v.shape.join() !== s.q.shape.join()) {
      throw new ArgumentError(`${path}: ${key}: query, key and value must have one shape, got [${s.q.shape}], [${s.k.shape}] and [${s.v.shape}]`);
    }
    const data = new Float32Array(s.q.data.length * 3);
    data.set(s.q.data, 0);
    data.set(s.k.data, s.q.data.length);
    data.set(s.v.data, 2 * s.q.data.length);
    out.set(key, { shape: [s.q.shape[0] * 3, ...s.q.shape.slice(1)], data });
  }
  return out;
}

/** `path`, or `path/name` where path is a directory (a Trainer's run directory holds model.safetensors, policy.safetensors). */
export function runFile(path: string, name: string): string {
  return existsSync(path) && statSync(path).isDirectory() ? join(path, name) : path;
}

/** Reads a checkpoint into a timm-named float32 state dict, with its metadata. */
export async function readCheckpoint(path: string): Promise<{ state: StateDict; metadata: Record<string, string> }> {
  const f = await readSafetensors(path);
  return { state: entriesOf(f, path), metadata: f.metadata };
}

/** A state dict (float32) with metadata (config JSON under CONFIG_KEY) as safetensors bytes. */
export function checkpointBytes(state: Iterable<[string, StateEntry]>, metadata: Record<string, string>): Uint8Array {
  const tensors = new Map<string, StTensorIn>();
  for (const [name, e] of state) tensors.set(name, { dtype: 'F32', shape: e.shape, data: e.data });
  return serializeSafetensors(tensors, { format: 'pt', ...metadata });
}

/** Metadata key of the id a Trainer.save gives each file of one save (resume and policies.fromFile check them). */
export const SAVE_ID_KEY = 'vitrim.save';

/**
 * The save id in a checkpoint's metadata, read from its header alone (not its tensors); undefined
 * where there is none or the file cannot be read as one (its own load reports that).
 */
export async function saveIdOf(path: string): Promise<string | undefined> {
  let fh: Awaited<ReturnType<typeof fsp.open>> | undefined;
  try {
    fh = await fsp.open(path, 'r');
    const len = Buffer.alloc(8);
    if ((await fh.read(len, 0, 8, 0)).bytesRead !== 8) return undefined;
    const n = Number(len.readBigUInt64LE(0));
    if (n < 2 || n > (1 << 24)) return undefined;
    const head = Buffer.alloc(n);
    if ((await fh.read(head, 0, n, 8)).bytesRead !== n) return undefined;
    const id = (JSON.parse(head.toString('utf8')) as { __metadata__?: Record<string, unknown> }).__metadata__?.[SAVE_ID_KEY];
    return typeof id === 'string' ? id : undefined;
  } catch {
    return undefined;
  } finally {
    await fh?.close().catch(() => {});
  }
}

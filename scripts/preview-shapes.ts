/**
 * Writes a PNG grid of shapes samples and their object masks, to look at the dataset:
 *   node --import tsx scripts/preview-shapes.ts [out.png (default $TMPDIR/vitrim-shapes-preview.png)] [--size 32] [--seed 0] [--split train] [--rows 4] [--zoom 4]
 * Layout: one column per class (numClasses 10); each cell is the image with its mask to the right
 * (mask drawn as the image darkened outside the object, object outlined in white).
 */
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { shapes } from '../lib/data/shapes.js';
import { encodePng } from '../lib/data/png.js';

const args = process.argv.slice(2);
const opt = (name: string, def: string): string => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : def;
};
const out = args[0] && !args[0].startsWith('--') ? args[0] : join(tmpdir(), 'vitrim-shapes-preview.png');
const size = Number(opt('size', '32'));
const seed = Number(opt('seed', '0'));
const rows = Number(opt('rows', '4'));
const zoom = Number(opt('zoom', String(Math.max(1, Math.round(128 / size)))));
const split = opt('split', 'train') as 'train' | 'test';

const ds = shapes({ split, size, seed });
const C = ds.numClasses;
const cell = size * zoom;
const gap = 4;
const W = C * (2 * cell + gap) + gap;
const H = rows * (cell + gap) + gap;
const px = new Uint8Array(W * H * 3).fill(255);

function put(x: number, y: number, r: number, g: number, b: number): void {
  const o = (y * W + x) * 3;
  px[o] = Math.round(r * 255);
  px[o + 1] = Math.round(g * 255);
  px[o + 2] = Math.round(b * 255);
}

for (let r = 0; r < rows; r++) {
  for (let c = 0; c < C; c++) {
    const { image, mask } = ds.sample(r * C + c);
    const n = size * size;
    const ox = gap + c * (2 * cell + gap);
    const oy = gap + r * (cell + gap);
    for (let y = 0; y < cell; y++) {
      for (let x = 0; x < cell; x++) {
        const p = Math.floor(y / zoom) * size + Math.floor(x / zoom);
        const [R, G, B] = [image[p], image[n + p], image[2 * n + p]];
        put(ox + x, oy + y, R, G, B);
        // Mask panel: image at 25% outside the object; white on the mask boundary.
        const m = mask[p];
        const py = Math.floor(y / zoom);
        const pxx = Math.floor(x / zoom);
        const edge =
          m &&
          (py === 0 || pxx === 0 || py === size - 1 || pxx === size - 1 ||
            !mask[p - 1] || !mask[p + 1] || !mask[p - size] || !mask[p + size]);
        if (edge && (x % zoom === 0 || y % zoom === 0 || zoom === 1)) put(ox + cell + x, oy + y, 1, 1, 1);
        else if (m) put(ox + cell + x, oy + y, R, G, B);
        else put(ox + cell + x, oy + y, 0.25 * R, 0.25 * G, 0.25 * B);
      }
    }
  }
}
writeFileSync(out, encodePng(px, W, H, 3));
console.log(`wrote ${out} (${W}×${H}): ${rows} rows × ${C} classes [${ds.classNames.join(', ')}], size ${size}, seed ${seed}, ${split}`);

/**
 * Stated peaks of the GPU a bench runs on, so that each CUDA row can say what fraction of the
 * device it uses. Figures are NVIDIA's datasheet numbers at boost clock: dense tensor-core rates
 * (half of the "with sparsity" figures the datasheets lead with), the fp32 (FMA, non-tensor) rate
 * and the HBM bandwidth. A stated peak is a ceiling nothing reaches; for memory-bound kernels the
 * `copy` row measured in the same run is the practical roof, and the rows give both.
 *
 * The device is recognised from the name and SM count in the cuda backend's detail line
 * (`NVIDIA H100 80GB HBM3 (sm_90, 132 SMs, ...)`); an unknown device gets no fractions.
 */

export interface Peaks {
  /** The device as recognised, with the datasheet the figures come from. */
  device: string;
  /** TFLOP/s, dense: bf16 tensor cores, tf32 tensor cores, fp32 FMA. */
  bf16: number;
  tf32: number;
  fp32: number;
  /** TB/s of HBM. */
  hbm: number;
}

interface Entry extends Omit<Peaks, 'device'> {
  device: string;
  match: (name: string, sms: number) => boolean;
}

// Order matters: the first match wins (NVL before the generic H100 / H200, PCIe before SXM).
const TABLE: Entry[] = [
  { device: 'H100 NVL (datasheet)', match: (n) => /H100 NVL/i.test(n), bf16: 835.5, tf32: 417.5, fp32: 60, hbm: 3.9 },
  { device: 'H100 PCIe (datasheet)', match: (n, s) => /H100/i.test(n) && (/PCIe/i.test(n) || s === 114), bf16: 756.5, tf32: 378, fp32: 51, hbm: 2.0 },
  { device: 'H100 SXM5 (datasheet)', match: (n) => /H100/i.test(n), bf16: 989.5, tf32: 494.5, fp32: 67, hbm: 3.35 },
  { device: 'H200 NVL (datasheet)', match: (n) => /H200 NVL/i.test(n), bf16: 835.5, tf32: 417.5, fp32: 60, hbm: 4.8 },
  { device: 'H200 SXM (datasheet)', match: (n) => /H200/i.test(n), bf16: 989.5, tf32: 494.5, fp32: 67, hbm: 4.8 },
  { device: 'A100 80GB SXM (datasheet)', match: (n) => /A100/i.test(n) && /80GB/i.test(n) && !/PCIe/i.test(n), bf16: 312, tf32: 156, fp32: 19.5, hbm: 2.039 },
  { device: 'A100 80GB PCIe (datasheet)', match: (n) => /A100/i.test(n) && /80GB/i.test(n), bf16: 312, tf32: 156, fp32: 19.5, hbm: 1.935 },
  { device: 'A100 40GB (datasheet)', match: (n) => /A100/i.test(n), bf16: 312, tf32: 156, fp32: 19.5, hbm: 1.555 },
];

/** The stated peaks of the device a cuda backend detail line names, or null if it is not in the table. */
export function statedPeaks(detail: string): Peaks | null {
  const m = /^(.*?) \(sm_\d+, (\d+) SMs/.exec(detail);
  if (!m) return null;
  const [, name, sms] = m;
  const e = TABLE.find((t) => t.match(name, Number(sms)));
  if (!e) return null;
  const { match: _match, ...peaks } = e;
  return peaks;
}

/** `v` as a percentage of `peak`, e.g. "41% of the bf16 tensor peak (989.5 TFLOP/s)". */
export function pctOf(v: number, peak: number, what: string, unit: string): string {
  return `${((100 * v) / peak).toFixed(0)}% of ${what} (${peak} ${unit})`;
}

/** Appends `extra` to a row note ("a; b"). */
export function addNote(note: string | undefined, extra: string): string {
  return note ? `${note}; ${extra}` : extra;
}

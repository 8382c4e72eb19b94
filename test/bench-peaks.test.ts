/**
 * bench/peaks.ts: the device is recognised from the cuda backend's detail line (the format of
 * device_detail in native/cuda/runtime.cu), and each device gets its own datasheet row.
 */
import { describe, expect, it } from 'vitest';
import { addNote, pctOf, statedPeaks } from '../bench/peaks.js';

const line = (name: string, sms: number) => `${name} (sm_90, ${sms} SMs, 79.1 GiB; driver 12.8, runtime 12.8)`;

describe('bench stated peaks', () => {
  it('tells the H100 variants and other GPUs apart by name and SM count', () => {
    expect(statedPeaks(line('NVIDIA H100 80GB HBM3', 132))).toMatchObject({ device: 'H100 SXM5 (datasheet)', bf16: 989.5, hbm: 3.35 });
    expect(statedPeaks(line('NVIDIA H100 PCIe', 114))).toMatchObject({ device: 'H100 PCIe (datasheet)', bf16: 756.5, hbm: 2.0 });
    // a PCIe board whose name does not say so is still told apart by its 114 SMs
    expect(statedPeaks(line('NVIDIA H100', 114))?.device).toBe('H100 PCIe (datasheet)');
    expect(statedPeaks(line('NVIDIA H100 NVL', 132))).toMatchObject({ device: 'H100 NVL (datasheet)', hbm: 3.9 });
    expect(statedPeaks(line('NVIDIA H200', 132))).toMatchObject({ device: 'H200 SXM (datasheet)', hbm: 4.8 });
    expect(statedPeaks(line('NVIDIA H200 NVL', 132))?.device).toBe('H200 NVL (datasheet)');
    expect(statedPeaks(line('NVIDIA A100-SXM4-80GB', 108))).toMatchObject({ device: 'A100 80GB SXM (datasheet)', hbm: 2.039 });
    expect(statedPeaks(line('NVIDIA A100 80GB PCIe', 108))?.hbm).toBe(1.935);
    expect(statedPeaks(line('NVIDIA A100-SXM4-40GB', 108))?.hbm).toBe(1.555);
  });

  it('gives no peaks for a device it does not know or a line it cannot read', () => {
    expect(statedPeaks(line('NVIDIA GeForce RTX 4090', 128))).toBeNull();
    expect(statedPeaks('NVIDIA H100 80GB HBM3')).toBeNull();
    expect(statedPeaks('')).toBeNull();
  });

  it('formats fractions and notes', () => {
    expect(pctOf(2.12, 3.35, 'the stated HBM bandwidth', 'TB/s')).toBe('63% of the stated HBM bandwidth (3.35 TB/s)');
    expect(addNote(undefined, 'b')).toBe('b');
    expect(addNote('a', 'b')).toBe('a; b');
  });
});

/**
 * Which devices can run here. The CUDA backend (libvitrim_cuda.so, next to vitrim.node) is loaded on
 * first use — the first backends() call or the first cuda tensor; when it cannot be used (library not
 * built, no driver, no GPU, ...) the CPU keeps working and backends() lists every reason.
 */
import { show } from './args.js';
import { ArgumentError, DeviceError, rethrow } from './errors.js';
import { native, type Device } from './native.js';

/** One entry of backends(). */
export interface BackendInfo {
  device: Device;
  available: boolean;
  /** What the device is (GPU name, compute capability, memory, versions); 'cpu' for the CPU. */
  detail: string;
  /** Why an unavailable device cannot be used: one line per attempt that failed (empty when available). */
  reasons: string[];
  /** The reasons joined with '; ' (undefined when available). */
  reason?: string;
  /** cpu only: worker threads, SIMD level detected, GEMM micro-kernel in use. */
  threads?: number;
  isa?: string;
  gemm?: string;
}

/**
 * Every backend, cpu first: `[{ device: 'cpu', available: true, threads, isa, gemm, ... },
 * { device: 'cuda', available, detail, reasons }]`. The first call tries to load the CUDA backend.
 */
export function backends(): BackendInfo[] {
  const info = native.info();
  return native.backends().map((b) => {
    const e: BackendInfo = { device: b.device, available: b.available, detail: b.detail, reasons: [...b.reasons] };
    if (!b.available) e.reason = b.reasons.length ? b.reasons.join('; ') : 'unavailable (no reason reported)';
    if (b.device === 'cpu') Object.assign(e, { threads: info.threads, isa: info.isa, gemm: native.gemmIsa() });
    return e;
  });
}

/** True when the CUDA backend loaded and found a GPU. */
export function cudaAvailable(): boolean {
  return native.backends().some((b) => b.device === 'cuda' && b.available);
}

/**
 * A device option resolved: 'auto' is cuda when available, else cpu; undefined is `fallback`;
 * 'cuda' without a usable backend throws DeviceError listing every reason.
 */
export function resolveDevice(d: Device | 'auto' | undefined, fallback: Device = 'cpu', who = 'device'): Device {
  if (d === undefined) return fallback;
  if (d === 'auto') return cudaAvailable() ? 'cuda' : 'cpu';
  if (d === 'cpu') return 'cpu';
  if (d === 'cuda') {
    const c = native.backends().find((b) => b.device === 'cuda');
    if (!c?.available) {
      throw new DeviceError(`${who}: 'cuda' is not available:${(c?.reasons ?? ['no cuda entry']).map((r) => `\n  - ${r}`).join('')}`);
    }
    return 'cuda';
  }
  throw new DeviceError(`${who}: unknown device '${String(d)}' (cpu, cuda, auto)`);
}

/**
 * TF32 tensor cores for float32 GEMMs on cuda (off by default, so float32 results match the CPU to
 * about 1e-5; on, float32 GEMMs round their inputs to 10-bit mantissas). DeviceError without cuda.
 */
export function setAllowTf32(allow: boolean): void {
  if (typeof allow !== 'boolean') throw new ArgumentError(`setAllowTf32: allow must be a boolean, got ${show(allow)}`);
  try {
    native.setAllowTf32(allow);
  } catch (e) {
    rethrow(e, 'setAllowTf32');
  }
}

/**
 * When cuda ops that check device-resident indices or labels report a bad value: 'immediate' (the
 * default: the op synchronises and throws IndexError itself) or 'deferred' (no synchronisation per
 * op; the next call that synchronises, such as a read or synchronize(), throws it, before any result
 * can be seen). DeviceError where cuda is unavailable.
 */
export function setDeviceChecks(mode: 'immediate' | 'deferred'): void {
  if (mode !== 'immediate' && mode !== 'deferred') throw new ArgumentError(`setDeviceChecks: mode must be 'immediate' or 'deferred', got ${show(mode)}`);
  try {
    native.setDeviceChecks(mode);
    checksMode = mode;
  } catch (e) {
    rethrow(e, 'setDeviceChecks');
  }
}
let checksMode: 'immediate' | 'deferred' = 'immediate';

/** The mode last set by setDeviceChecks() ('immediate' until then). */
export function deviceChecks(): 'immediate' | 'deferred' {
  return checksMode;
}

/** Waits until the work queued on `device` (default cuda) is done; a no-op on the cpu or before cuda loads. */
export function synchronize(device: Device = 'cuda'): void {
  try {
    native.synchronize(device);
  } catch (e) {
    rethrow(e, 'synchronize');
  }
}

/**
 * synchronize() as a Promise: the wait runs on a worker thread, so the event loop (a server's other
 * requests, timers) keeps running while the GPU finishes the work queued before this call. Rejects
 * with the typed error synchronize() would throw (a deferred device-side check's IndexError, a
 * device error); resolves at once on the cpu or before cuda loads. Work queued after the call is
 * not waited for. Rejects with ArgumentError while a CUDA graph is being captured.
 */
export async function synchronizeAsync(device: Device = 'cuda'): Promise<void> {
  let p: Promise<void>;
  try {
    p = native.synchronizeAsync(device);
  } catch (e) {
    rethrow(e, 'synchronizeAsync');
  }
  try {
    await p;
  } catch (e) {
    rethrow(e, 'synchronizeAsync');
  }
}

/**
 * Unfused float64 reference of attention with DynamicViT's keep-mask and a head gate, forward and
 * backward (shared by the attention tests and the per-ISA row-kernel tests): explicit scores,
 * softmax_with_policy written out op by op (row max, exp, policy matrix, eps-smoothed
 * normalisation), A·V and the gate; the backward is the chain rule through each of those ops,
 * including the non-detached row max.
 */
export interface Dims {
  B: number;
  N: number;
  H: number;
  D: number;
}

export interface RefOut {
  out: Float64Array;
  gqkv: Float64Array;
  gkeep: Float64Array | null;
  /**
   * gkeep's sum over absolute values (per term |gA_ij|·E_ij, with gA's own sums taken absolutely):
   * gkeep_j = Σ_{h, i≠j} gA_ij·E_ij can cancel, and a float32 result is then only accurate to a few
   * roundings of this scale, not of the sum (expectCloseSum).
   */
  gkeepMag: Float64Array | null;
  ggate: Float64Array | null;
}

/** float64 reference of forward and backward (loss gradient gout given). */
export function attentionReference(
  qkv: Float32Array,
  { B, N, H, D }: Dims,
  scale: number,
  keep: Float32Array | null,
  gate: Float32Array | null,
  eps: number,
  gout: Float32Array,
): RefOut {
  const C = H * D;
  const C3 = 3 * C;
  const out = new Float64Array(B * N * C);
  const gqkv = new Float64Array(B * N * C3);
  const gkeep = keep ? new Float64Array(B * N) : null;
  const gkeepMag = keep ? new Float64Array(B * N) : null;
  const ggate = gate ? new Float64Array(B * H) : null;
  const mat = () => Array.from({ length: N }, () => new Float64Array(N));
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const q = (i: number, d: number) => qkv[(b * N + i) * C3 + h * D + d];
      const k = (i: number, d: number) => qkv[(b * N + i) * C3 + C + h * D + d];
      const v = (i: number, d: number) => qkv[(b * N + i) * C3 + 2 * C + h * D + d];
      const g = gate ? gate[b * H + h] : 1;
      // ---- forward, op by op ----
      const S = mat();
      for (let i = 0; i < N; i++)
        for (let j = 0; j < N; j++) {
          let s = 0;
          for (let d = 0; d < D; d++) s += q(i, d) * k(j, d);
          S[i][j] = scale * s;
        }
      const argmax = new Array<number>(N);
      const E = mat();
      for (let i = 0; i < N; i++) {
        let am = 0;
        for (let j = 1; j < N; j++) if (S[i][j] > S[i][am]) am = j;
        argmax[i] = am;
        for (let j = 0; j < N; j++) E[i][j] = Math.exp(S[i][j] - S[i][am]);
      }
      const Pi = mat();
      for (let i = 0; i < N; i++)
        for (let j = 0; j < N; j++) {
          const kj = keep ? keep[b * N + j] : 1;
          Pi[i][j] = kj + (1 - kj) * (i === j ? 1 : 0);
        }
      const e = keep ? eps : 0; // plain softmax when there is no keep-mask
      const A = mat();
      const Z = new Float64Array(N);
      const P = mat();
      for (let i = 0; i < N; i++) {
        for (let j = 0; j < N; j++) {
          A[i][j] = E[i][j] * Pi[i][j];
          Z[i] += A[i][j];
        }
        for (let j = 0; j < N; j++) P[i][j] = (A[i][j] + e / N) / (Z[i] + e);
      }
      const O = Array.from({ length: N }, () => new Float64Array(D));
      for (let i = 0; i < N; i++)
        for (let d = 0; d < D; d++) {
          let s = 0;
          for (let j = 0; j < N; j++) s += P[i][j] * v(j, d);
          O[i][d] = s;
          out[(b * N + i) * C + h * D + d] = g * s;
        }
      // ---- backward, op by op ----
      const go = (i: number, d: number) => gout[(b * N + i) * C + h * D + d];
      if (ggate) {
        let s = 0;
        for (let i = 0; i < N; i++) for (let d = 0; d < D; d++) s += go(i, d) * O[i][d];
        ggate[b * H + h] = s;
      }
      const gP = mat();
      const gPabs = mat();
      for (let i = 0; i < N; i++)
        for (let j = 0; j < N; j++) {
          let s = 0;
          let sa = 0;
          for (let d = 0; d < D; d++) {
            const t = g * go(i, d) * v(j, d);
            s += t;
            sa += Math.abs(t);
          }
          gP[i][j] = s;
          gPabs[i][j] = sa;
        }
      for (let j = 0; j < N; j++)
        for (let d = 0; d < D; d++) {
          let s = 0;
          for (let i = 0; i < N; i++) s += P[i][j] * g * go(i, d);
          gqkv[(b * N + j) * C3 + 2 * C + h * D + d] = s;
        }
      const gS = mat();
      for (let i = 0; i < N; i++) {
        const den = Z[i] + e;
        let gZ = 0;
        let gZabs = 0;
        for (let j = 0; j < N; j++) {
          gZ -= (gP[i][j] * (A[i][j] + e / N)) / (den * den);
          gZabs += (gPabs[i][j] * (A[i][j] + e / N)) / (den * den);
        }
        let gm = 0;
        for (let j = 0; j < N; j++) {
          const gA = gP[i][j] / den + gZ;
          const gE = gA * Pi[i][j];
          if (gkeep && i !== j) {
            gkeep[b * N + j] += gA * E[i][j]; // dPi_ij/dkeep_j = 1 - [i == j]
            gkeepMag![b * N + j] += (gPabs[i][j] / den + gZabs) * E[i][j];
          }
          const gU = gE * E[i][j];
          gS[i][j] = gU;
          gm -= gU;
        }
        gS[i][argmax[i]] += gm; // through the (non-detached) row max
      }
      for (let i = 0; i < N; i++)
        for (let d = 0; d < D; d++) {
          let sq = 0;
          let sk = 0;
          for (let j = 0; j < N; j++) {
            sq += gS[i][j] * k(j, d);
            sk += gS[j][i] * q(j, d);
          }
          gqkv[(b * N + i) * C3 + h * D + d] = scale * sq;
          gqkv[(b * N + i) * C3 + C + h * D + d] = scale * sk;
        }
    }
  }
  return { out, gqkv, gkeep, gkeepMag, ggate };
}

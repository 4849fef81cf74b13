// Min/max decimation for the live charts: a chart never needs more than about one point per
// pixel column, so the visible points are folded into 4-pixel buckets (two points each:
// min and max for lines, first and last for step lines) in preallocated buffers. Spikes
// survive; the path uPlot strokes shrinks from the buffer's length to the chart's width.

export type FoldMode = 'minmax' | 'firstlast';

/** First index with x[i] >= v (x sorted ascending). */
export function lowerBound(x: ArrayLike<number>, v: number, lo = 0, hi = x.length): number {
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (x[mid] < v) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

export class Decimator {
  private xs = new Float64Array(0);
  private ys: Float64Array[];
  private readonly modes: FoldMode[];

  constructor(modes: FoldMode[]) {
    this.modes = modes;
    this.ys = modes.map(() => new Float64Array(0));
  }

  private ensure(n: number): void {
    if (this.xs.length >= n) return;
    const cap = Math.max(n, 256);
    this.xs = new Float64Array(cap);
    this.ys = this.modes.map(() => new Float64Array(cap));
  }

  /**
   * The points of `x`/`ys` within [xMin, xMax] (plus one on each side, so lines reach the
   * edges), folded into `buckets` buckets when there are more than twice as many points.
   * The arrays returned are views into this decimator's buffers (or the input's, when
   * nothing needed folding): valid until the next call.
   */
  run(x: Float64Array, ys: Float64Array[], xMin: number, xMax: number, buckets: number): [Float64Array, ...Float64Array[]] {
    const n = x.length;
    const i0 = Math.max(0, lowerBound(x, xMin) - 1);
    const i1 = Math.min(n, lowerBound(x, xMax, i0) + 1);
    const count = i1 - i0;
    const b = Math.max(1, Math.floor(buckets));
    if (count <= 2 * b) return [x.subarray(i0, i1), ...ys.map((y) => y.subarray(i0, i1))];

    this.ensure(2 * b + 2);
    const x0 = x[i0];
    const width = (x[i1 - 1] - x0 || 1) / b;
    const xs = this.xs;
    let out = 0;
    let i = i0;
    let bucket = 0;
    while (i < i1) {
      // The bucket holding x[i], and its right edge; the last bucket takes the end.
      while (bucket < b - 1 && x[i] >= x0 + (bucket + 1) * width) bucket++;
      const edge = bucket === b - 1 ? Infinity : x0 + (bucket + 1) * width;
      let j = i + 1;
      while (j < i1 && x[j] < edge) j++;
      // Bucket [i, j): one point if alone, else two.
      const last = j - 1;
      if (last === i) {
        xs[out] = x[i];
        for (let s = 0; s < ys.length; s++) this.ys[s][out] = ys[s][i];
        out++;
      } else {
        xs[out] = x[i];
        xs[out + 1] = x[last];
        for (let s = 0; s < ys.length; s++) {
          const y = ys[s];
          const dst = this.ys[s];
          if (this.modes[s] === 'firstlast') {
            dst[out] = y[i];
            dst[out + 1] = y[last];
          } else {
            let lo = Infinity;
            let hi = -Infinity;
            for (let k = i; k < j; k++) {
              const v = y[k];
              if (v < lo) lo = v;
              if (v > hi) hi = v;
            }
            dst[out] = lo === Infinity ? NaN : lo;
            dst[out + 1] = hi === -Infinity ? NaN : hi;
          }
        }
        out += 2;
      }
      i = j;
    }
    return [xs.subarray(0, out), ...this.ys.map((y) => y.subarray(0, out))];
  }
}

// Tests of the chart decimator: windowing, min/max folding that keeps spikes, first/last
// folding for step lines, and no copy when there is nothing to fold.
import { describe, expect, it } from 'vitest';
import { Decimator, lowerBound } from '../src/decimate';

const range = (n: number, f: (i: number) => number) => Float64Array.from({ length: n }, (_, i) => f(i));

describe('Decimator', () => {
  it('finds window edges by binary search', () => {
    const x = range(10, (i) => i * 10);
    expect(lowerBound(x, 35)).toBe(4);
    expect(lowerBound(x, -1)).toBe(0);
    expect(lowerBound(x, 1000)).toBe(10);
  });

  it('returns views of the input when the points fit', () => {
    const x = range(100, (i) => i);
    const y = range(100, (i) => i * 2);
    const [xs, ys] = new Decimator(['minmax']).run(x, [y], 9.5, 20.5, 50);
    expect(xs.buffer).toBe(x.buffer);
    expect(xs[0]).toBe(9); // one point before the window, so the line reaches the edge
    expect(xs[xs.length - 1]).toBe(21);
    expect(ys[1]).toBe(20);
  });

  it('folds 1,800 points to at most two per bucket and keeps a one-point spike', () => {
    const x = range(1800, (i) => i);
    const y = range(1800, (i) => (i === 1234 ? 99 : 1));
    const [xs, ys] = new Decimator(['minmax']).run(x, [y], 0, 1799, 100);
    expect(xs.length).toBeLessThanOrEqual(200);
    expect(Math.max(...ys)).toBe(99);
    expect(Math.min(...ys)).toBe(1);
    for (let i = 1; i < xs.length; i++) expect(xs[i]).toBeGreaterThanOrEqual(xs[i - 1]);
  });

  it('folds step lines to first and last values, so a step stays where it was', () => {
    const x = range(1000, (i) => i);
    const y = range(1000, (i) => (i < 500 ? 1 : 2));
    const [xs, ys] = new Decimator(['firstlast']).run(x, [y], 0, 999, 50);
    const firstTwo = [...ys].findIndex((v) => v === 2);
    expect(xs[firstTwo]).toBeGreaterThanOrEqual(480);
    expect(xs[firstTwo]).toBeLessThanOrEqual(520);
    expect(new Set(ys)).toEqual(new Set([1, 2]));
  });

  it('skips NaN in min/max', () => {
    const x = range(400, (i) => i);
    const y = range(400, (i) => (i % 2 ? NaN : 5));
    const [, ys] = new Decimator(['minmax']).run(x, [y], 0, 399, 10);
    expect([...ys].every((v) => v === 5)).toBe(true);
  });
});

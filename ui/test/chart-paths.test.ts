import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type uPlot from 'uplot';
import { foldedPaths } from '../src/ui/chart';

/** Records the path calls in canvas pixels. */
class FakePath {
  ops: string[] = [];
  moveTo(x: number, y: number) {
    this.ops.push(`M${x},${y}`);
  }
  lineTo(x: number, y: number) {
    this.ops.push(`L${x},${y}`);
  }
}

const real = globalThis.Path2D;
beforeEach(() => {
  (globalThis as unknown as { Path2D: unknown }).Path2D = FakePath;
});
afterEach(() => {
  (globalThis as unknown as { Path2D: unknown }).Path2D = real;
});

/** A plot 100×50 px at (10, 5), x over [0, 10], y over [0, 5]. */
function plot(xs: number[], ys: number[]): uPlot {
  return {
    data: [xs, ys],
    series: [{}, { scale: 'y' }],
    scales: { x: { min: 0, max: 10 }, y: { min: 0, max: 5 } },
    bbox: { left: 10, top: 5, width: 100, height: 50 },
  } as unknown as uPlot;
}

describe('foldedPaths', () => {
  it('maps values to canvas pixels, one segment per point', () => {
    const p = foldedPaths(false)(plot([0, 5, 10], [0, 5, 2.5]), 1, 0, 2)!;
    expect((p.stroke as unknown as FakePath).ops).toEqual(['M10,55', 'L60,5', 'L110,30']);
  });

  it('breaks the line at a gap', () => {
    const p = foldedPaths(false)(plot([0, 2, 4, 6], [1, NaN, 1, 1]), 1, 0, 3)!;
    expect((p.stroke as unknown as FakePath).ops).toEqual(['M10,45', 'M50,45', 'L70,45']);
  });

  it('holds each value until the next point for step lines', () => {
    const p = foldedPaths(true)(plot([0, 5], [0, 5]), 1, 0, 1)!;
    expect((p.stroke as unknown as FakePath).ops).toEqual(['M10,55', 'L60,55', 'L60,5']);
  });

  it('draws nothing before the scales are known', () => {
    const u = plot([0], [1]);
    (u.scales.x as { min: number | null }).min = null;
    expect(foldedPaths(false)(u, 1, 0, 0)).toBeNull();
  });
});

// Tests of slate helpers: what moved between two slates, and the score-by-source bar
// (segments are weight × breakdown and sum to the score; negatives left of zero).
import { describe, expect, it } from 'vitest';
import type { RecItem, Weights } from '../src/engine/types';
import { moves } from '../src/ui/slate';
import { barScale, contributions, stackBar } from '../src/ui/stackbar';

const weights: Weights = { seq: 1, like: 0.5, purchase: 0, itemknn: 2, markov: 1, pop: 0.1, text: 0.5 };
const item = (breakdown: Partial<Weights>): RecItem => {
  const b = { seq: 0, like: 0, purchase: 0, itemknn: 0, markov: 0, pop: 0, text: 0, ...breakdown };
  const score = Object.entries(b).reduce((a, [s, v]) => a + weights[s as keyof Weights] * v, 0);
  return { item: 'i', score, breakdown: b, explored: false };
};

describe('moves', () => {
  it('reports up, down, new, unchanged and dropped items', () => {
    const r = moves(['a', 'b', 'c', 'd'], ['c', 'a', 'e', 'd']);
    expect(r.moves).toEqual([{ kind: 'up', by: 2 }, { kind: 'down', by: 1 }, { kind: 'new' }, { kind: 'same' }]);
    expect(r.dropped).toEqual(['b']);
  });
});

describe('stack bar', () => {
  it('has one segment per source contribution, summing to the score', () => {
    const it1 = item({ seq: 0.5, itemknn: 0.25, markov: -0.2 });
    const c = contributions(it1, weights);
    expect(c).toEqual([0.5, 0, 0, 0.5, -0.2, 0, 0]);
    expect(c.reduce((a, b) => a + b, 0)).toBeCloseTo(it1.score, 12);
  });

  it('draws negative contributions left of the zero line', () => {
    const it1 = item({ seq: 0.5, markov: -0.5 });
    const scale = barScale([it1], weights);
    expect(scale).toEqual({ neg: 0.5, pos: 0.5 });
    const el = stackBar(it1, weights, scale);
    const zero = Number(el.querySelector('line')!.getAttribute('x1'));
    expect(zero).toBe(100);
    const rects = [...el.querySelectorAll('rect')];
    expect(rects).toHaveLength(2);
    const [pos, neg] = rects.map((r) => ({ x: Number(r.getAttribute('x')), w: Number(r.getAttribute('width')) }));
    expect(pos.x).toBeCloseTo(100);
    expect(neg.x + neg.w).toBeCloseTo(100);
    expect(rects[1].querySelector('title')!.textContent).toBe('markov: 1.000 × -0.500 = -0.500');
  });
});

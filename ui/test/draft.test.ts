// Tests of strategy drafts: creation, field-path diff, client validation, rebase, import.
import { describe, expect, it } from 'vitest';
import {
  createDraft,
  defaultStrategy,
  diffStrategies,
  errorsByField,
  parseStrategyFile,
  rebase,
  validateStrategy,
} from '../src/draft';

describe('drafts', () => {
  it('copies the live strategy deeply: editing the draft never touches live', () => {
    const live = defaultStrategy();
    const d = createDraft(3, live);
    d.strategy.weights.pop = 2;
    d.strategy.filters.include_tags.push('shoes');
    expect(live.weights.pop).toBe(0.2);
    expect(live.filters.include_tags).toEqual([]);
    expect(d.base.weights.pop).toBe(0.2);
    expect(d.baseVersion).toBe(3);
  });

  it('lists changed fields by path with old and new values', () => {
    const a = defaultStrategy();
    const b = structuredClone(a);
    b.weights.pop = 0.5;
    b.pinned = ['seq'];
    b.exploration = { mode: 'epsilon', epsilon: 0.1 };
    expect(diffStrategies(a, b)).toEqual([
      { path: 'weights.pop', old: 0.2, new: 0.5 },
      { path: 'pinned', old: [], new: ['seq'] },
      { path: 'exploration.mode', old: 'none', new: 'epsilon' },
      { path: 'exploration.epsilon', old: undefined, new: 0.1 },
    ]);
    expect(diffStrategies(a, structuredClone(a))).toEqual([]);
  });

  it('accepts the default strategy', () => {
    expect(validateStrategy(defaultStrategy())).toEqual([]);
  });

  it('names the field in every message, with the server ranges', () => {
    const s = defaultStrategy();
    s.weights.pop = 6; // above max_weights.pop = 5
    s.learning.learning_rate = 0;
    s.exploration = { mode: 'thompson', scale: 11 };
    s.reward.skip = -2000;
    s.candidates = 0;
    s.batching.max_batch = 5000;
    s.batching.max_queue_delay_us = 1.5;
    s.learning.update_every = NaN;
    const byField = errorsByField(validateStrategy(s));
    expect(byField.get('weights.pop')).toBe('weights.pop: 6 is outside its bounds [0, 5]');
    expect(byField.get('learning.learning_rate')).toMatch(/^learning\.learning_rate: must be in \[0\.0001, 10\]/);
    expect(byField.get('exploration.scale')).toMatch(/^exploration\.scale: must be in \[0, 10\], got 11/);
    expect(byField.get('reward.skip')).toMatch(/^reward\.skip: must be in \[-1000, 1000\]/);
    expect(byField.get('candidates')).toMatch(/^candidates: /);
    expect(byField.get('batching.max_batch')).toMatch(/4096/);
    expect(byField.get('batching.max_queue_delay_us')).toMatch(/whole number/);
    expect(byField.get('learning.update_every')).toMatch(/finite/);
  });

  it('checks bounds order, pinned sources and the name length', () => {
    const s = defaultStrategy();
    s.min_weights.seq = 3;
    s.max_weights.seq = 2;
    s.pinned = ['seq', 'bogus' as 'seq'];
    s.name = 'x'.repeat(201);
    const byField = errorsByField(validateStrategy(s));
    expect(byField.get('min_weights.seq')).toMatch(/above max_weights\.seq/);
    expect(byField.get('pinned')).toMatch(/unknown source `bogus`/);
    expect(byField.get('name')).toMatch(/200 bytes/);
  });

  it('keeps weights within [-1000, 1000] even with wide bounds', () => {
    const s = defaultStrategy();
    s.min_weights.itemknn = -5000;
    s.max_weights.itemknn = 5000;
    s.weights.itemknn = -1500;
    expect(errorsByField(validateStrategy(s)).get('weights.itemknn')).toMatch(/\[-1000, 1000\]/);
  });

  it('rebases a draft onto a newer live version and reports conflicts', () => {
    const base = defaultStrategy();
    const draft = structuredClone(base);
    draft.weights.pop = 1;
    draft.candidates = 80;
    const live = structuredClone(base);
    live.candidates = 60; // moved on live too: a conflict, the draft wins
    live.reward.skip = -1; // moved only on live: kept
    const { strategy, conflicts } = rebase(base, draft, live);
    expect(strategy.weights.pop).toBe(1);
    expect(strategy.candidates).toBe(80);
    expect(strategy.reward.skip).toBe(-1);
    expect(conflicts).toEqual(['candidates']);
  });

  it('imports a bare strategy or a wrapped one, filling defaults and refusing unknown fields', () => {
    const s = parseStrategyFile(JSON.stringify({ name: 'x', candidates: 99, batching: { max_batch: 8 } }));
    expect(s.name).toBe('x');
    expect(s.candidates).toBe(99);
    expect(s.batching).toEqual({ max_batch: 8, max_queue_delay_us: 100 });
    expect(s.weights.seq).toBe(1);
    const w = parseStrategyFile(JSON.stringify({ version: 2, strategy: { name: 'y' } }));
    expect(w.name).toBe('y');
    expect(() => parseStrategyFile('{"nmae": 1}')).toThrow(/unknown field `nmae`/);
    expect(() => parseStrategyFile('nope')).toThrow(/not JSON/);
  });
});

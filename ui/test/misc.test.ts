// Tests of smaller pieces: the chart time axis, the replay strategy choice, the app state
// following the stream, the perf recorder, and error wording.
import { describe, expect, it } from 'vitest';
import { AppState } from '../src/app-state';
import { defaultStrategy } from '../src/draft';
import { EngineError, errorFromAnswer } from '../src/engine/errors';
import { checkChoice } from '../src/pages/replay';
import { medianTick, recordTick } from '../src/perf';
import { timeSplits } from '../src/ui/chart';
import { strategyView } from './fixtures';

describe('time axis', () => {
  it('puts ticks on round UTC steps, about one per 110 px', () => {
    const { splits, incr } = timeSplits(1000, 1000 + 1800, 600);
    expect(incr).toBe(600);
    expect(splits).toEqual([1200, 1800, 2400]);
  });
});

describe('replay strategy choice', () => {
  it('takes the live one alone, or at least two', () => {
    expect(checkChoice(['live'])).toBeNull();
    expect(checkChoice(['live', 'draft'])).toBeNull();
    expect(checkChoice(['v3', 'v2'])).toBeNull();
    expect(checkChoice([])).toMatch(/at least/);
    expect(checkChoice(['draft'])).toMatch(/at least two/);
  });
});

describe('app state', () => {
  it('follows strategy and model events from the stream', () => {
    const app = new AppState();
    app.live = strategyView(3);
    app.info = { name: 'attune', version: '0', environment: 'demo', demo: true, started_ms: 0, uptime_s: 0, strategy_version: 3, model: null };
    let emitted = 0;
    app.on('strategy', () => emitted++);
    app.ingest({ event: 'strategy', data: { version: 4, created_ms: 1, note: 'set', strategy: defaultStrategy() } });
    expect(app.live.version).toBe(4);
    expect(app.info.strategy_version).toBe(4);
    expect(app.versions.map((v) => v.version)).toEqual([4]);
    expect(emitted).toBe(1);
    app.ingest({ event: 'strategy', data: { version: 2, created_ms: 0, note: 'set', strategy: defaultStrategy() } });
    expect(app.live.version).toBe(4);
    app.ingest({ event: 'model', data: { version: 2, name: 'ckpt', model: { version: 2, dir: '/m/ckpt' } } });
    expect(app.info.model).toMatchObject({ version: 2, name: 'ckpt' });
  });
});

describe('perf recorder', () => {
  it('keeps the last 600 ticks in window.__attunePerf', () => {
    for (let i = 0; i < 700; i++) recordTick(i);
    expect(window.__attunePerf!.ticks).toHaveLength(600);
    expect(window.__attunePerf!.ticks[0]).toBe(100);
    expect(medianTick()).toBe(399.5);
  });
});

describe('error wording', () => {
  it('explains proxies in front of a stopped engine as unreachable', () => {
    const e = errorFromAnswer(502, 'Bad Gateway');
    expect(e).toBeInstanceOf(EngineError);
    expect(e.unreachable).toBe(true);
    expect(errorFromAnswer(502, { error: { code: 'x', message: 'y' } }).unreachable).toBe(false);
  });
});

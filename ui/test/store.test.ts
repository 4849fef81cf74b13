// Tests of the live store: the ring buffer, markers, connection state, pause and scrub.
import { describe, expect, it } from 'vitest';
import { stats } from './fixtures';
import { StatsRing, toPoint } from '../src/ring';
import { LIVE_CAPACITY, LiveStore } from '../src/store';

describe('StatsRing', () => {
  it('keeps the newest points in time order when it wraps, many times over', () => {
    const r = new StatsRing(5);
    for (let i = 0; i < 23; i++) r.push(toPoint(stats(i)));
    expect(r.length).toBe(5);
    expect([...r.view('rps')]).toEqual([118, 119, 120, 121, 122]);
    expect(r.at(0).ts).toBe((1_700_000_000_000 + 18_000) / 1000);
  });

  it('derives reward per recommendation and unpacks the weights', () => {
    const p = toPoint(stats(0, { recommendations_per_s: 10, reward_per_s: 5, weights: { seq: 2, like: 0, purchase: 0, itemknn: 0, markov: 0, pop: 0.7, text: 0 } }));
    expect(p.reward_per_rec).toBe(0.5);
    expect(p.w_seq).toBe(2);
    expect(p.w_pop).toBe(0.7);
    expect(toPoint(stats(0, { recommendations_per_s: 0 })).reward_per_rec).toBe(0);
  });

  it('merges history points into their place and replaces a repeated time', () => {
    const r = new StatsRing(10);
    r.push(toPoint(stats(0)));
    r.push(toPoint(stats(10)));
    r.merge([toPoint(stats(5)), toPoint(stats(3))]);
    r.push(toPoint(stats(10, { recommendations_per_s: 7 })));
    expect([...r.view('ts')].map((t) => t - 1_700_000_000)).toEqual([0, 3, 5, 10]);
    expect(r.view('rps')[3]).toBe(7);
  });
});

describe('LiveStore', () => {
  it('holds 30 minutes of one point a second', () => {
    const s = new LiveStore();
    for (let i = 0; i < LIVE_CAPACITY + 100; i++) s.addStats(stats(i));
    expect(LIVE_CAPACITY).toBe(1800);
    expect(s.ring.length).toBe(1800);
    expect(s.view('rps')[0]).toBe(200);
  });

  it('freezes the view on pause while the buffer keeps filling, and scrubs', () => {
    const s = new LiveStore();
    for (let i = 0; i < 10; i++) s.addStats(stats(i));
    s.pause();
    for (let i = 10; i < 20; i++) s.addStats(stats(i));
    expect(s.viewLength).toBe(10);
    expect(s.ring.length).toBe(20);
    expect(s.selectedPoint()?.rps).toBe(109);
    s.scrub(3);
    expect(s.scrubbed).toBe(3);
    expect(s.selectedPoint()?.rps).toBe(103);
    s.scrub(99);
    expect(s.scrubbed).toBe(9);
    s.resume();
    expect(s.isPaused).toBe(false);
    expect(s.scrubbed).toBeNull();
    expect(s.viewLength).toBe(20);
    expect(s.selectedPoint()?.rps).toBe(119);
  });

  it('scrubbing pauses a live view', () => {
    const s = new LiveStore();
    for (let i = 0; i < 5; i++) s.addStats(stats(i));
    s.scrub(1);
    expect(s.isPaused).toBe(true);
    s.addStats(stats(5));
    expect(s.viewLength).toBe(5);
  });

  it('keeps markers sorted and without duplicates', () => {
    const s = new LiveStore();
    const m = { ts_ms: 5, kind: 'publish' as const, label: 'v2 publish', version: 2 };
    s.ingest({ event: 'marker', data: m });
    s.addHistory([], [m, { ts_ms: 1, kind: 'model', label: 'model v2', version: 2 }]);
    expect(s.markers.map((x) => x.ts_ms)).toEqual([1, 5]);
  });

  it('reads "reconnecting" from a drop until connected again, and notices a silent stream', () => {
    let now = 0;
    const s = new LiveStore(() => now);
    s.ingest({ event: 'connection', data: { state: 'connected' } });
    expect(s.down).toBe(false);
    s.ingest({ event: 'connection', data: { state: 'disconnected', retry_ms: 2000 } });
    expect(s.connection.state).toBe('reconnecting');
    s.ingest({ event: 'connection', data: { state: 'connecting' } });
    expect(s.down).toBe(true);
    s.ingest({ event: 'connection', data: { state: 'connected' } });
    expect(s.down).toBe(false);
    now = 4000;
    s.checkStale();
    expect(s.down).toBe(false);
    now = 5001;
    s.checkStale();
    expect(s.down).toBe(true);
    expect(s.connection.reason).toMatch(/5 s/);
    s.addStats(stats(1));
    expect(s.connection.state).toBe('connected');
  });
});

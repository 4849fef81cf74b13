// Tests of the number and time formatting helpers.
import { describe, expect, it } from 'vitest';
import {
  fmtBytes,
  fmtDuration,
  fmtInt,
  fmtMs,
  fmtNum,
  fmtPct,
  fmtRate,
  fmtUs,
  fmtUtc,
  fromUtcInput,
  toUtcInput,
} from '../src/format';

describe('format', () => {
  it('groups thousands in counts and large rates', () => {
    expect(fmtInt(12345)).toBe('12,345');
    expect(fmtRate(12345.4)).toBe('12,345 /s');
    expect(fmtRate(3.214)).toBe('3.21 /s');
    expect(fmtRate(0)).toBe('0 /s');
  });

  it('shows latencies in ms with two decimals, tiny ones with three', () => {
    expect(fmtMs(1.234)).toBe('1.23 ms');
    expect(fmtMs(0.0451)).toBe('0.045 ms');
    expect(fmtMs(1234.5)).toBe('1,235 ms');
    expect(fmtUs(850)).toBe('850 µs');
    expect(fmtUs(1450)).toBe('1.45 ms');
  });

  it('shows shares as percentages', () => {
    expect(fmtPct(0.456)).toBe('45.6 %');
    expect(fmtPct(1)).toBe('100.0 %');
  });

  it('keeps about three significant digits', () => {
    expect(fmtNum(0.12345)).toBe('0.123');
    expect(fmtNum(12.345)).toBe('12.3');
    expect(fmtNum(2)).toBe('2');
    expect(fmtNum(-1.5)).toBe('-1.5');
  });

  it('writes UTC times with a Z and no T', () => {
    expect(fmtUtc(Date.UTC(2026, 11, 6, 20, 47, 3))).toBe('2026-12-06 20:47:03Z');
  });

  it('round-trips datetime-local values as UTC', () => {
    const ms = Date.UTC(2026, 11, 6, 20, 47);
    expect(toUtcInput(ms)).toBe('2026-12-06T20:47');
    expect(fromUtcInput('2026-12-06T20:47')).toBe(ms);
    expect(fromUtcInput('')).toBeNull();
  });

  it('shows a dash for missing numbers', () => {
    expect(fmtRate(NaN)).toBe('–');
    expect(fmtMs(undefined)).toBe('–');
    expect(fmtPct(null)).toBe('–');
  });

  it('formats bytes and durations', () => {
    expect(fmtBytes(512)).toBe('512 B');
    expect(fmtBytes(1536)).toBe('1.5 KiB');
    expect(fmtDuration(45)).toBe('45 s');
    expect(fmtDuration(598)).toBe('9 min 58 s');
    expect(fmtDuration(3 * 3600 + 120)).toBe('3 h 02 min');
  });
});

// Tests of the item finder: a query lists the engine's matches with title, tags and
// cosine; "Similar" asks for the items like a found one; a late answer does not overwrite a
// newer one; a text source that is off says what to do; tag actions get the tag.
import { describe, expect, it, vi } from 'vitest';
import { EngineError } from '../src/engine/errors';
import type { Engine, TextMatches } from '../src/engine/types';
import { itemFinder } from '../src/ui/item-finder';

const matches = (ids: string[]): TextMatches => ({
  encoder: 'minilm-l6 (384-d, sha256 53aa51172d14)',
  items: ids.map((item, i) => ({ item, score: 0.9 - i * 0.1, title: `Title ${item}`, tags: ['Sci-Fi', 'Kids'] })),
});

const tick = () => new Promise((r) => setTimeout(r, 0));

function submit(el: HTMLElement, text: string): void {
  (el.querySelector('input[type=search]') as HTMLInputElement).value = text;
  el.querySelector('form')!.dispatchEvent(new Event('submit', { cancelable: true }));
}

const rows = (el: HTMLElement) => [...el.querySelectorAll('tbody tr')].map((r) => r.getAttribute('data-item'));

describe('item finder', () => {
  it('lists the matches of a query and then the items like one of them', async () => {
    const searchItems = vi.fn(async () => matches(['i1', 'i2']));
    const similarItems = vi.fn(async () => matches(['i7']));
    const f = itemFinder({ searchItems, similarItems } as unknown as Engine, { id: 't' });
    submit(f.el, '  space adventure ');
    await tick();
    expect(searchItems).toHaveBeenCalledWith('space adventure', 10);
    expect(rows(f.el)).toEqual(['i1', 'i2']);
    expect(f.el.textContent).toContain('Title i1');
    expect(f.el.textContent).toContain('0.900');
    expect(f.el.textContent).toContain('Nearest to “space adventure”');
    const similar = [...f.el.querySelectorAll('tbody button')].find((b) => b.textContent === 'Similar') as HTMLButtonElement;
    similar.click();
    await tick();
    expect(similarItems).toHaveBeenCalledWith('i1', 10);
    expect(rows(f.el)).toEqual(['i7']);
    expect(f.el.textContent).toContain('Items like i1');
  });

  it('keeps the newest answer when an older one arrives late', async () => {
    let release: (m: TextMatches) => void = () => undefined;
    const slow = new Promise<TextMatches>((r) => (release = r));
    const searchItems = vi.fn().mockReturnValueOnce(slow).mockResolvedValueOnce(matches(['new']));
    const f = itemFinder({ searchItems, similarItems: vi.fn() } as unknown as Engine, { id: 't' });
    submit(f.el, 'first');
    submit(f.el, 'second');
    await tick();
    release(matches(['old']));
    await tick();
    expect(rows(f.el)).toEqual(['new']);
  });

  it('says what to do when the text source is off, and asks for a query', async () => {
    const off = new EngineError(503, 'unavailable', 'the text source is off: no encoder');
    const f = itemFinder({ searchItems: vi.fn(async () => Promise.reject(off)), similarItems: vi.fn() } as unknown as Engine, { id: 't' });
    submit(f.el, '   ');
    await tick();
    expect(f.el.textContent).toContain('Type a description first');
    submit(f.el, 'lamp');
    await tick();
    expect(f.el.querySelector('[role=alert]')!.textContent).toContain('the text source is off');
    expect(f.el.textContent).toContain('fetch-encoder.sh');
  });

  it('offers the tag actions beside each tag', async () => {
    const run = vi.fn();
    const f = itemFinder({ searchItems: vi.fn(async () => matches(['i1'])), similarItems: vi.fn() } as unknown as Engine, {
      id: 't',
      tagActions: [{ label: 'never', title: (t) => `never ${t}`, run }],
    });
    submit(f.el, 'x');
    await tick();
    (f.el.querySelector('[data-tag="Kids"] .tag-action') as HTMLButtonElement).click();
    expect(run).toHaveBeenCalledWith('Kids');
  });
});

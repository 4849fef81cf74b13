// Export a strategy to a JSON file, and import one from a file into the draft.

import { parseStrategyFile } from '../../draft';
import type { Strategy } from '../../engine/types';
import { download, h } from '../../ui/dom';
import { toast } from '../../ui/toast';

export function exportStrategy(s: Strategy, filename: string): void {
  download(new Blob([`${JSON.stringify(s, null, 2)}\n`], { type: 'application/json' }), filename);
  toast(`Exported ${filename}.`, 'info');
}

/** A labelled file input that hands a parsed strategy over (errors become a toast). */
export function importButton(onStrategy: (s: Strategy, file: string) => void): HTMLElement {
  const input = h('input', { type: 'file', accept: 'application/json,.json', id: 'strategy-import', class: 'sr-only' });
  input.addEventListener('change', async () => {
    const f = input.files?.[0];
    input.value = '';
    if (!f) return;
    try {
      onStrategy(parseStrategyFile(await f.text()), f.name);
    } catch (e) {
      toast(`Could not import ${f.name}: ${e instanceof Error ? e.message : String(e)}`, 'error');
    }
  });
  const label = h('label', { for: input.id, class: 'btn', tabindex: '0', role: 'button' }, 'Import JSON…');
  label.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' || e.key === ' ') {
      e.preventDefault();
      input.click();
    }
  });
  return h('span', null, input, label);
}

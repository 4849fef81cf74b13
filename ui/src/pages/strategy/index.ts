// The Strategy page: edit a draft of the live strategy (every field), see its diff against
// live, have it validated (here and by the engine, debounced), publish it with a message and
// an optional guard, rebase it when live moved, preview it as a user, export / import it,
// and browse, compare and roll back versions. Items found by text lend their tags to the
// draft's tag filters.

import type { Page, PageContext } from '../../app-state';
import { cloneStrategy, createDraft, diffStrategies, rebase, validateStrategy, type FieldError } from '../../draft';
import { EngineError, describe } from '../../engine/errors';
import type { StrategyVersion } from '../../engine/types';
import { h, keepFocus, notice, replace } from '../../ui/dom';
import { toast } from '../../ui/toast';
import { itemFinder } from '../../ui/item-finder';
import { diffTable } from './diff-view';
import { strategyEditor } from './editor';
import { exportStrategy, importButton } from './files';
import { guardPanel } from './guard';
import { historyPanel } from './history';
import { previewPanel } from './preview';
import { publishDialog } from './publish';

/** Quiet time after an edit before the engine validates the draft. */
const VALIDATE_DEBOUNCE_MS = 400;

export function strategyPage(ctx: PageContext): Page {
  const { engine, app } = ctx;
  let clientErrors: FieldError[] = [];
  let engineError: FieldError | null = null;
  let validateTimer: ReturnType<typeof setTimeout> | null = null;
  let validateSeq = 0;

  const draftState = h('span', { class: 'muted' });
  const status = h('div', { class: 'status-line', role: 'status', 'aria-live': 'polite' });
  const conflict = h('div', { class: 'conflict', hidden: true, role: 'alert' });
  const diffBox = h('div');
  const publishBtn = h('button', { type: 'button', class: 'btn btn-primary' }, 'Publish…');
  const discardBtn = h('button', { type: 'button', class: 'btn' }, 'Discard draft');
  const exportBtn = h('button', { type: 'button', class: 'btn' }, 'Export JSON');

  const unloaded = h('div');
  const editor = strategyEditor(() => app.draft?.strategy ?? null, (path) => edited(path));
  const guard = guardPanel(ctx);
  const preview = previewPanel(ctx, () => (app.draft ? { strategy: app.draft.strategy, changed: changes().length > 0 } : null));
  const history = historyPanel(ctx, (v) => draftFrom(v));
  const finder = itemFinder(engine, {
    id: 'strategy-find',
    tagActions: [
      { label: 'only', title: (t) => `Serve only items tagged “${t}” (adds it to the draft’s include tags)`, run: (t) => addTag('include_tags', t) },
      { label: 'never', title: (t) => `Never serve items tagged “${t}” (adds it to the draft’s exclude tags)`, run: (t) => addTag('exclude_tags', t) },
    ],
  });

  /** Puts `tag` into one of the draft's tag filters (once), as an edit of that field. */
  function addTag(list: 'include_tags' | 'exclude_tags', tag: string): void {
    ensureDraft();
    const d = app.draft;
    if (!d) {
      toast('The live strategy is not loaded yet: no draft to edit.', 'error');
      return;
    }
    const tags = d.strategy.filters[list];
    const name = list === 'include_tags' ? 'Only items tagged' : 'Never items tagged';
    if (tags.includes(tag)) {
      toast(`“${tag}” is already in ${name}.`, 'info');
      return;
    }
    tags.push(tag);
    editor.load(d.strategy);
    edited(`filters.${list}`);
    toast(`Added “${tag}” to ${name} in the draft — review the diff, then publish.`, 'info');
  }

  const changes = () => (app.draft && app.live ? diffStrategies(app.live.strategy, app.draft.strategy) : []);

  /** Draft from the live version, when there is none or it has no edits. */
  function ensureDraft(): void {
    const live = app.live;
    if (!live) return;
    const d = app.draft;
    const untouched = d && diffStrategies(d.base, d.strategy).length === 0;
    if (!d || (untouched && d.baseVersion !== live.version)) {
      app.setDraft(createDraft(live.version, live.strategy));
      editor.load(app.draft!.strategy);
    }
  }

  function edited(_path: string): void {
    engineError = null;
    refresh();
    scheduleEngineValidation();
  }

  function scheduleEngineValidation(): void {
    if (validateTimer) clearTimeout(validateTimer);
    validateTimer = setTimeout(async () => {
      const d = app.draft;
      if (!d || clientErrors.length) return;
      const seq = ++validateSeq;
      // A late answer must not hide what happened meanwhile (a refused publish, say): the
      // status line takes it only if nothing else was said since the question.
      const said = statusRev;
      const tell = (text: string, error = false) => statusRev === said && setStatus(text, error);
      try {
        await engine.validateStrategy(d.strategy);
        if (seq !== validateSeq) return;
        engineError = null;
        tell('The engine accepts this draft.');
      } catch (e) {
        if (seq !== validateSeq) return;
        if (e instanceof EngineError && e.status === 400) {
          engineError = { path: e.field ?? 'strategy', message: e.message };
          tell(`The engine refuses this draft: ${e.message}`, true);
        } else {
          tell(`Could not ask the engine to validate: ${describe(e)}`, true);
        }
      }
      showErrors();
    }, VALIDATE_DEBOUNCE_MS);
  }

  /** Counts what the status line said, so a late validation does not speak over it. */
  let statusRev = 0;
  function setStatus(text: string, error = false): void {
    statusRev++;
    status.textContent = text;
    status.classList.toggle('error', error);
  }

  function showErrors(): void {
    const all = engineError ? [...clientErrors, engineError] : clientErrors;
    const unplaced = editor.showErrors(all);
    if (unplaced.length) setStatus(unplaced.join(' '), true);
  }

  /** Redraws what depends on the draft: state line, errors, diff, buttons, conflict. */
  function refresh(): void {
    const d = app.draft;
    const live = app.live;
    const ready = !!(d && live);
    editor.el.hidden = !ready;
    unloaded.hidden = ready;
    for (const b of [publishBtn, discardBtn, exportBtn]) b.disabled = !ready;
    importer.hidden = !ready;
    if (!d || !live) {
      replace(
        unloaded,
        ctx.store.down
          ? notice('error', 'The live strategy is not loaded: the engine is unreachable — retrying every 2 s. The editor opens on its own when it is back.')
          : notice('loading', 'Loading the live strategy…'),
      );
      replace(diffBox, notice('empty', 'The diff appears once the live strategy is loaded.'));
      draftState.textContent = '';
      return;
    }
    const ch = changes();
    clientErrors = validateStrategy(d.strategy);
    showErrors();
    draftState.textContent = `Draft from v${d.baseVersion} · ${ch.length ? `${ch.length} change${ch.length === 1 ? '' : 's'} from live` : 'no changes'}${clientErrors.length ? ` · ${clientErrors.length} error${clientErrors.length === 1 ? '' : 's'}` : ''}`;
    if (clientErrors.length) setStatus(`Fix ${clientErrors.length} field${clientErrors.length === 1 ? '' : 's'} before publishing: ${clientErrors[0].message}`, true);
    else if (!ch.length) setStatus('Edit any field to start a draft; the live strategy is untouched until you publish.');
    replace(diffBox, diffTable(live.strategy, d.strategy, [`live v${live.version}`, 'draft'], 'No changes — edit a field to start a draft.'));
    publishBtn.disabled = !ch.length || clientErrors.length > 0;
    discardBtn.disabled = diffStrategies(d.base, d.strategy).length === 0 && d.baseVersion === live.version;
    showConflict(d.baseVersion !== live.version && diffStrategies(d.base, d.strategy).length > 0 ? live.version : null);
  }

  function showConflict(liveVersion: number | null): void {
    conflict.hidden = liveVersion === null;
    if (liveVersion === null) return;
    const btn = h('button', { type: 'button', class: 'btn btn-primary btn-small' }, 'Rebase draft');
    btn.addEventListener('click', () => void doRebase());
    replace(conflict, h('span', null, `The live version moved to v${liveVersion} meanwhile — rebase your draft (it started from v${app.draft?.baseVersion}).`), btn);
  }

  async function doRebase(): Promise<void> {
    const d = app.draft;
    if (!d) return;
    try {
      const live = await engine.strategy();
      app.live = live;
      const r = rebase(d.base, d.strategy, live.strategy);
      app.setDraft({ baseVersion: live.version, base: cloneStrategy(live.strategy), strategy: r.strategy });
      editor.load(r.strategy);
      refresh();
      toast(
        r.conflicts.length
          ? `Rebased on v${live.version}; your value kept where live also changed: ${r.conflicts.join(', ')}.`
          : `Rebased on v${live.version}; your edits are kept.`,
        r.conflicts.length ? 'info' : 'ok',
      );
    } catch (e) {
      toast(`Could not rebase: ${describe(e)}`, 'error');
    }
  }

  async function doPublish(): Promise<void> {
    const d = app.draft;
    if (!d) return;
    const ch = changes();
    const choice = await publishDialog(ch.length, d.baseVersion);
    if (!choice) return;
    // The publish is the engine's validation too: a pending or late one is moot now.
    if (validateTimer) clearTimeout(validateTimer);
    validateTimer = null;
    validateSeq++;
    // The button disables itself while it works: focus goes to the status line, which
    // then reads out how the publish went.
    if (document.activeElement === publishBtn) keepFocusOn(status);
    publishBtn.disabled = true;
    setStatus('Publishing…');
    try {
      const v = await engine.publish({ strategy: d.strategy, message: choice.message, base_version: d.baseVersion, guard: choice.guard });
      app.applyVersion(v);
      app.setDraft(createDraft(v.version, v.strategy));
      editor.load(app.draft!.strategy);
      setStatus(`Published v${v.version}.`);
      toast(`Published v${v.version}${choice.guard ? ' under a guard' : ''}.`);
      if (choice.guard) void guard.refresh();
    } catch (e) {
      if (e instanceof EngineError && e.status === 409) {
        const live = await engine.strategy().catch(() => null);
        if (live) app.live = live;
        setStatus(`Not published: the live version moved to v${live?.version ?? '?'} meanwhile — rebase your draft.`, true);
        showConflict(live?.version ?? -1);
        toast(`The live version moved to v${live?.version ?? '?'} meanwhile — rebase your draft.`, 'error');
      } else {
        if (e instanceof EngineError && e.status === 400) {
          engineError = { path: e.field ?? 'strategy', message: e.message };
          showErrors();
        }
        setStatus(`Not published: ${describe(e)}`, true);
        toast(`Publish failed: ${describe(e)}`, 'error');
      }
    } finally {
      refresh();
      keepFocus(status);
    }
  }

  function keepFocusOn(el: HTMLElement): void {
    el.setAttribute('tabindex', '-1');
    el.focus();
  }

  function draftFrom(v: StrategyVersion): void {
    const live = app.live;
    if (!live) return;
    app.setDraft({ baseVersion: live.version, base: cloneStrategy(live.strategy), strategy: cloneStrategy(v.strategy) });
    editor.load(app.draft!.strategy);
    refresh();
    scheduleEngineValidation();
    toast(`The draft now holds v${v.version}'s fields.`, 'info');
  }

  publishBtn.addEventListener('click', () => void doPublish());
  discardBtn.addEventListener('click', () => {
    app.setDraft(null);
    ensureDraft();
    refresh();
    setStatus('Draft discarded.');
  });
  exportBtn.addEventListener('click', () => {
    const d = app.draft;
    if (d) exportStrategy(d.strategy, `strategy-from-v${d.baseVersion}${changes().length ? '-draft' : ''}.json`);
  });
  const importer = importButton((s, file) => {
    const live = app.live;
    if (!live) return;
    app.setDraft({ baseVersion: live.version, base: cloneStrategy(live.strategy), strategy: s });
    editor.load(s);
    refresh();
    scheduleEngineValidation();
    toast(`Imported ${file} into the draft — review the diff, then publish.`, 'info');
  });

  let shown = false;
  // The learned weights move with every stats tick.
  ctx.store.on('stats', () => shown && editor.showLearned(app.live?.weights ?? null));
  ctx.store.on('connection', () => !app.live && refresh());
  app.on('strategy', () => {
    ensureDraft();
    editor.showLearned(app.live?.weights ?? null);
    refresh();
  });

  const el = h(
    'section',
    { class: 'page page-strategy', 'aria-labelledby': 'strategy-h' },
    h('div', { class: 'page-head' }, h('h1', { id: 'strategy-h' }, 'Strategy'), draftState, h('span', { class: 'spacer', style: { flex: '1' } }), h('div', { class: 'toolbar' }, exportBtn, importer, discardBtn, publishBtn)),
    conflict,
    status,
    h(
      'div',
      { class: 'cols-2' },
      h('section', { class: 'panel', 'aria-labelledby': 'editor-h' }, h('div', { class: 'panel-head' }, h('h2', { id: 'editor-h' }, 'Draft')), unloaded, editor.el),
      h('div', { class: 'side-sticky' }, h('section', { class: 'panel', 'aria-labelledby': 'diff-h' }, h('div', { class: 'panel-head' }, h('h2', { id: 'diff-h' }, 'Draft vs live')), diffBox), guard.el),
    ),
    preview.el,
    h('section', { class: 'panel', 'aria-labelledby': 'strategy-find-h' }, h('div', { class: 'panel-head' }, h('h2', { id: 'strategy-find-h' }, 'Find items by text')), h('p', { class: 'muted' }, 'Find the items a filter is about: each tag of a found item can go into the draft’s tag filters.'), finder.el),
    history.el,
  );

  ensureDraft();
  refresh();

  return {
    el,
    show() {
      shown = true;
      ensureDraft();
      editor.showLearned(app.live?.weights ?? null);
      refresh();
      void guard.refresh();
    },
    hide() {
      shown = false;
    },
  };
}

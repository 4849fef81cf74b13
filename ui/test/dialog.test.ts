// Tests of the modal dialogs: focus starts inside and wraps, Escape cancels, Enter submits,
// the page behind is inert, and the typed confirmation needs the exact name.
import { afterEach, describe, expect, it } from 'vitest';
import { confirmDialog, promptToken, typedConfirm } from '../src/ui/dialog';

const press = (key: string, shift = false) =>
  document.activeElement!.dispatchEvent(new KeyboardEvent('keydown', { key, shiftKey: shift, bubbles: true }));
const tick = () => new Promise((r) => setTimeout(r, 0));

afterEach(() => {
  document.body.innerHTML = '';
});

describe('dialogs', () => {
  it('makes the page inert, closes on Escape and gives focus back', async () => {
    document.body.innerHTML = '<div id="app"><button id="opener">open</button></div>';
    const opener = document.getElementById('opener')!;
    opener.focus();
    const p = confirmDialog({ title: 'Sure?', message: 'x', confirm: 'Yes' });
    expect(document.getElementById('app')!.hasAttribute('inert')).toBe(true);
    expect(document.querySelector('[role=dialog]')!.contains(document.activeElement)).toBe(true);
    press('Escape');
    expect(await p).toBe(false);
    expect(document.querySelector('[role=dialog]')).toBeNull();
    expect(document.getElementById('app')!.hasAttribute('inert')).toBe(false);
    expect(document.activeElement).toBe(opener);
  });

  it('wraps Tab inside the dialog', async () => {
    document.body.innerHTML = '<div id="app"></div>';
    const p = confirmDialog({ title: 'Sure?', message: 'x', confirm: 'Yes' });
    const buttons = [...document.querySelectorAll<HTMLButtonElement>('.dialog button')];
    buttons[buttons.length - 1].focus();
    press('Tab');
    expect(document.activeElement).toBe(buttons[0]);
    press('Tab', true);
    expect(document.activeElement).toBe(buttons[buttons.length - 1]);
    press('Escape');
    await p;
  });

  it('submits the token prompt with Enter and trims the token', async () => {
    document.body.innerHTML = '<div id="app"></div>';
    const p = promptToken('needed');
    const input = document.querySelector<HTMLInputElement>('.dialog input[type=password]')!;
    expect(document.activeElement).toBe(input);
    input.value = '  tok  ';
    input.form!.requestSubmit();
    expect(await p).toBe('tok');
  });

  it('refuses a typed confirmation until the name matches', async () => {
    document.body.innerHTML = '<div id="app"></div>';
    const p = typedConfirm({ title: 'Forget u1?', message: 'gone', expected: 'u1', confirm: 'Forget' });
    const input = document.querySelector<HTMLInputElement>('.dialog input')!;
    const form = input.form!;
    input.value = 'u';
    form.requestSubmit();
    await tick();
    expect(document.querySelector('.dialog-error')!.textContent).toMatch(/u1/);
    expect(document.querySelector('[role=dialog]')).not.toBeNull();
    input.value = 'u1';
    form.requestSubmit();
    expect(await p).toBe(true);
  });
});

// DOM helpers, formatters, notices and dialogs. No innerHTML with data: text only.

import { ConnectionLost, RpcError } from './rpc.js';

/** h('button', {class: 'x', onclick: fn, hidden: true}, 'text', child) */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2), value);
    } else if (key === 'class') {
      el.className = value;
    } else if (key === 'dataset') {
      Object.assign(el.dataset, value);
    } else if (key in el && typeof value !== 'string') {
      el[key] = value;
    } else {
      el.setAttribute(key, value === true ? '' : value);
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
}

export function clear(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export const $ = (selector, root = document) => root.querySelector(selector);

// --- formatting -------------------------------------------------------------------------

export function formatBytes(bytes) {
  if (bytes === null || bytes === undefined || Number.isNaN(Number(bytes))) return '–';
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let value = Number(bytes);
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(unit === 0 || value >= 100 ? 0 : 1)} ${units[unit]}`;
}

export function formatDate(iso) {
  if (!iso) return '–';
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return String(iso);
  return date.toLocaleString(undefined, {
    year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit',
  });
}

export function formatDuration(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(Number(seconds))) return '–';
  const total = Math.max(0, Math.round(Number(seconds)));
  const hours = Math.floor(total / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  const secs = total % 60;
  const mm = String(minutes).padStart(hours ? 2 : 1, '0');
  const ss = String(secs).padStart(2, '0');
  return hours ? `${hours}:${mm}:${ss}` : `${mm}:${ss}`;
}

// --- errors -----------------------------------------------------------------------------

const sentence = (text) => (text && !/[.!?)]$/.test(text) ? `${text}.` : text);

const ROLE_HINT = { viewer: 'a viewer', operator: 'an operator', admin: 'an admin' };

/** A readable sentence for any error: RPC errors use message and data, never a stack. */
export function describeError(err, action) {
  const prefix = action ? `${action} failed: ` : '';
  if (err instanceof RpcError) {
    const d = err.data && typeof err.data === 'object' ? err.data : {};
    const parts = [err.message || `Error ${err.code}`];
    if (err.code === -32002 && d.required_role) {
      parts.push(`This needs ${ROLE_HINT[d.required_role] || d.required_role} role${d.have_role ? ` (you are ${d.have_role})` : ''}.`);
    } else if (err.code === -32602 && d.param) {
      parts.push(`${d.param}: ${d.rule || 'invalid value'}.`);
    } else if (err.code === -32040 && d.retry_after_ms) {
      parts.push(`Try again in ${Math.ceil(d.retry_after_ms / 1000)} s.`);
    } else if (err.code === -32060 && d.available_bytes !== undefined) {
      parts.push(`Free space: ${formatBytes(d.available_bytes)}.`);
    } else if (err.code === -32050 && d.detail && !String(err.message).includes(d.dependency || '\u0000')) {
      // The technical detail is only useful when the message does not name the dependency.
      parts.push(`${d.dependency || 'dependency'}: ${String(d.detail).slice(0, 160)}`);
    } else if (err.code === -32001 && d.reason && !String(err.message).toLowerCase().includes(String(d.reason).toLowerCase())) {
      parts.push(`(${d.reason})`);
    }
    const extra = d.hint || d.suggestion;
    if (extra) parts.push(String(extra));
    if (err.code === -32603 && d.request_id) parts.push(`Reference: ${d.request_id}.`);
    return prefix + parts.map((p) => sentence(String(p).trim())).join(' ');
  }
  if (err instanceof ConnectionLost) return prefix + err.message;
  if (err && typeof err.message === 'string' && err.message) return prefix + err.message;
  return `${prefix}Something went wrong.`;
}

// --- notices ----------------------------------------------------------------------------

const NOTICE_MS = 6000;

/** Show a notice in the live region; errors stay until dismissed. */
export function notify(text, kind = 'info') {
  const region = kind === 'error' ? $('#alerts') : $('#notices');
  const close = h('button', { type: 'button', class: 'notice-close', 'aria-label': 'Dismiss' }, '×');
  const item = h('div', { class: `notice notice-${kind}`, role: kind === 'error' ? 'alert' : 'status' },
    h('span', { class: 'notice-text' }, text), close);
  close.addEventListener('click', () => item.remove());
  region.append(item);
  while (region.children.length > 4) region.firstElementChild.remove();
  if (kind !== 'error') setTimeout(() => item.remove(), NOTICE_MS);
  else setTimeout(() => item.remove(), NOTICE_MS * 3);
  return item;
}

export function notifyError(err, action) {
  return notify(describeError(err, action), 'error');
}

/** Run an async action with the button disabled and busy; errors become notices. */
export async function busy(button, action, label) {
  if (button) {
    button.disabled = true;
    button.setAttribute('aria-busy', 'true');
  }
  try {
    return await action();
  } catch (err) {
    notifyError(err, label);
    return undefined;
  } finally {
    if (button) {
      button.disabled = false;
      button.removeAttribute('aria-busy');
    }
  }
}

// --- dialogs ----------------------------------------------------------------------------

/** A modal <dialog> built from `body`; resolves with the submitted FormData or null. */
export function formDialog({ title, body, submitLabel = 'OK', danger = false, cancelLabel = 'Cancel' }) {
  return new Promise((resolve) => {
    const titleId = `dlg-${Math.random().toString(36).slice(2)}`;
    const form = h('form', { method: 'dialog', class: 'dialog-form' },
      h('h2', { id: titleId }, title),
      body,
      h('div', { class: 'dialog-actions' },
        cancelLabel ? h('button', { type: 'button', value: 'cancel', class: 'btn', onclick: () => dialog.close('cancel') }, cancelLabel) : null,
        h('button', { type: 'submit', value: 'ok', class: danger ? 'btn btn-danger' : 'btn btn-primary' }, submitLabel)));
    const dialog = h('dialog', { 'aria-labelledby': titleId }, form);
    let data = null;
    form.addEventListener('submit', (ev) => {
      if (!form.reportValidity()) {
        ev.preventDefault();
        return;
      }
      data = new FormData(form);
    });
    dialog.addEventListener('close', () => {
      dialog.remove();
      resolve(dialog.returnValue === 'ok' ? data : null);
    });
    document.body.append(dialog);
    dialog.showModal();
  });
}

export async function confirmDialog(title, text, submitLabel = 'Delete') {
  const result = await formDialog({ title, body: h('p', {}, text), submitLabel, danger: true });
  return result !== null;
}

/** Copy text to the clipboard, with a fallback for insecure contexts. */
export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    const area = h('textarea', { readonly: true, class: 'offscreen' });
    area.value = text;
    document.body.append(area);
    area.select();
    const ok = document.execCommand('copy');
    area.remove();
    return ok;
  }
}

/** A download URL made usable from this page: same origin as the client when the server
 * named another host for the same daemon (img-src is 'self'). */
export function sameOriginUrl(url) {
  try {
    const parsed = new URL(url, location.href);
    if (parsed.origin === location.origin) return parsed.href;
    if (parsed.pathname.startsWith('/files/') || parsed.pathname.startsWith('/cameras/')) return `${location.origin}${parsed.pathname}${parsed.search}`;
    return parsed.href;
  } catch {
    return url;
  }
}

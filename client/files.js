// Files view: recordings and snapshots with pagination, download, delete, storage usage.

import {
  $, busy, clear, confirmDialog, describeError, formatBytes, formatDate, formatDuration,
  formDialog, h, notify, sameOriginUrl,
} from './ui.js';

const PAGE_SIZE = 20;
const LINK_MAX_AGE_MS = 5 * 60 * 1000; // signed links live 10 min by default

export class FilesView {
  constructor(app) {
    this.app = app;
    this.kind = 'recordings';
    this.offset = { recordings: 0, snapshots: 0 };
    this.visible = false;
    this.loadedAt = 0;
    this.refreshTimer = null;
    this.seq = 0;
    this.bind();
  }

  bind() {
    const tabs = [$('#tab-recordings'), $('#tab-snapshots')];
    for (const tab of tabs) {
      tab.addEventListener('click', () => this.selectTab(tab.dataset.kind));
      tab.addEventListener('keydown', (ev) => {
        const index = tabs.indexOf(tab);
        let next = null;
        if (ev.key === 'ArrowRight') next = tabs[(index + 1) % tabs.length];
        else if (ev.key === 'ArrowLeft') next = tabs[(index + tabs.length - 1) % tabs.length];
        else if (ev.key === 'Home') next = tabs[0];
        else if (ev.key === 'End') next = tabs[tabs.length - 1];
        if (next) {
          ev.preventDefault();
          next.focus();
          this.selectTab(next.dataset.kind);
        }
      });
    }
    $('#page-prev').addEventListener('click', () => this.page(-1));
    $('#page-next').addEventListener('click', () => this.page(1));
    $('#files-refresh').addEventListener('click', (ev) => busy(ev.currentTarget, () => this.load(), 'Refreshing'));
  }

  reset() {
    this.offset = { recordings: 0, snapshots: 0 };
    clear($('#files-body'));
    $('#page-info').textContent = '';
    clear($('#storage')).hidden = true;
  }

  onShow() {
    this.visible = true;
    if (this.app.connected) this.load();
  }

  onHide() {
    this.visible = false;
  }

  onReady() {
    if (this.visible) this.load();
  }

  onNotification(method, params) {
    if (!this.visible) return;
    const changesRecordings = method === 'recording_status_update' && params.status !== 'STARTED';
    const changesSnapshots = method === 'snapshot_taken';
    if ((changesRecordings && this.kind === 'recordings') || (changesSnapshots && this.kind === 'snapshots')) {
      clearTimeout(this.refreshTimer);
      this.refreshTimer = setTimeout(() => this.load(), 300);
    } else if (changesRecordings || changesSnapshots) {
      this.loadStorage();
    }
  }

  selectTab(kind) {
    if (kind === this.kind) return;
    this.kind = kind;
    for (const tab of document.querySelectorAll('[role="tab"]')) {
      const selected = tab.dataset.kind === kind;
      tab.setAttribute('aria-selected', String(selected));
      tab.tabIndex = selected ? 0 : -1;
      if (selected) $('#files-panel').setAttribute('aria-labelledby', tab.id);
    }
    this.load();
  }

  page(direction) {
    this.offset[this.kind] = Math.max(0, this.offset[this.kind] + direction * PAGE_SIZE);
    this.load();
  }

  async load() {
    const seq = ++this.seq;
    const kind = this.kind;
    const body = $('#files-body');
    if (!body.firstChild) clear(body, h('p', { class: 'muted' }, 'Loading…'));
    this.loadStorage();
    let listing;
    try {
      listing = await this.app.call(kind === 'recordings' ? 'list_recordings' : 'list_snapshots',
        { limit: PAGE_SIZE, offset: this.offset[kind] });
    } catch (err) {
      if (seq !== this.seq) return;
      clear(body, h('p', { class: 'error' }, describeError(err, `Loading ${kind}`)));
      $('#page-info').textContent = '';
      return;
    }
    if (seq !== this.seq) return;
    if (listing.files.length === 0 && listing.total > 0 && this.offset[kind] > 0) {
      this.offset[kind] = Math.max(0, Math.floor((listing.total - 1) / PAGE_SIZE) * PAGE_SIZE);
      this.load();
      return;
    }
    this.loadedAt = Date.now();
    let details = [];
    if (kind === 'recordings' && listing.files.length) {
      details = await this.app.batch(listing.files.map((f) => ['get_recording_info', { filename: f.filename }]))
        .catch(() => []);
      if (seq !== this.seq) return;
    }
    this.renderTable(kind, listing, details);
  }

  renderTable(kind, listing, details) {
    const body = $('#files-body');
    const start = listing.total ? listing.offset + 1 : 0;
    const end = listing.offset + listing.files.length;
    $('#page-info').textContent = listing.total
      ? `${start}–${end} of ${listing.total}` : '';
    $('#page-prev').disabled = listing.offset === 0;
    $('#page-next').disabled = end >= listing.total;
    if (!listing.files.length) {
      clear(body, h('p', { class: 'empty' }, kind === 'recordings'
        ? 'No recordings yet. Start one from the Cameras view.'
        : 'No snapshots yet. Take one from the Cameras view.'));
      return;
    }
    const isRec = kind === 'recordings';
    const heads = ['Name', 'Camera', 'Date', 'Size', ...(isRec ? ['Duration'] : []), 'Actions'];
    const rows = listing.files.map((file, index) => {
      const info = details[index]?.result;
      const cells = [
        ['Name', h('span', { class: 'filename' }, file.filename)],
        ['Camera', file.device || '–'],
        ['Date', formatDate(file.modified_time)],
        ['Size', formatBytes(file.file_size)],
      ];
      if (isRec) cells.push(['Duration', info ? formatDuration(info.duration) : '–']);
      cells.push(['Actions', this.actionsFor(kind, file)]);
      return h('tr', { dataset: { filename: file.filename } },
        cells.map(([label, value], i) => (i === 0
          ? h('th', { scope: 'row', dataset: { label } }, value)
          : h('td', { dataset: { label } }, value))));
    });
    clear(body, h('table', { class: 'files-table' },
      h('caption', { class: 'visually-hidden' }, isRec ? 'Recordings' : 'Snapshots'),
      h('thead', {}, h('tr', {}, heads.map((text) => h('th', { scope: 'col' }, text)))),
      h('tbody', {}, rows)));
  }

  actionsFor(kind, file) {
    const box = h('div', { class: 'row-actions' });
    if (kind === 'snapshots') {
      box.append(h('button', { type: 'button', class: 'btn btn-small', 'aria-label': `View ${file.filename}`, onclick: () => this.view(file) }, 'View'));
    }
    const link = h('a', { class: 'btn btn-small', href: file.download_url, download: file.filename, 'aria-label': `Download ${file.filename}` }, 'Download');
    link.addEventListener('click', (ev) => this.freshLink(ev, kind, file, link));
    box.append(link);
    if (this.app.atLeast('admin')) {
      box.append(h('button', {
        type: 'button', class: 'btn btn-small btn-danger', 'aria-label': `Delete ${file.filename}`,
        onclick: (ev) => this.remove(kind, file, ev.currentTarget),
      }, 'Delete'));
    }
    return box;
  }

  /** Signed links expire: fetch a fresh one when the listing is old. */
  async freshLink(ev, kind, file, link) {
    if (Date.now() - this.loadedAt < LINK_MAX_AGE_MS || link.dataset.fresh) return;
    ev.preventDefault();
    try {
      const info = await this.app.call(kind === 'recordings' ? 'get_recording_info' : 'get_snapshot_info', { filename: file.filename });
      link.href = info.download_url;
      link.dataset.fresh = '1';
      link.click();
      delete link.dataset.fresh;
    } catch (err) {
      notify(describeError(err, 'Download'), 'error');
    }
  }

  async view(file) {
    const img = h('img', { src: sameOriginUrl(file.download_url), alt: `Snapshot ${file.filename}`, class: 'dialog-img' });
    await formDialog({
      title: file.filename,
      body: h('div', {}, img, h('p', { class: 'muted small' }, `${file.device || ''} · ${formatDate(file.modified_time)} · ${formatBytes(file.file_size)}`)),
      submitLabel: 'Close',
      cancelLabel: null,
    });
  }

  async remove(kind, file, button) {
    const noun = kind === 'recordings' ? 'recording' : 'snapshot';
    const ok = await confirmDialog(`Delete ${noun}?`, `${file.filename} will be deleted permanently.`);
    if (!ok) return;
    const method = kind === 'recordings' ? 'delete_recording' : 'delete_snapshot';
    let gone = false;
    const result = await busy(button, async () => {
      try {
        return await this.app.call(method, { filename: file.filename });
      } catch (err) {
        gone = err.code === -32010;
        throw err;
      }
    }, 'Delete');
    if (result) notify(result.message || `${file.filename} deleted.`);
    if (result || gone) await this.load();
  }

  async loadStorage() {
    const box = $('#storage');
    if (!this.app.atLeast('admin')) {
      box.hidden = true;
      return;
    }
    try {
      const info = await this.app.call('get_storage_info');
      const pct = Math.max(0, Math.min(100, Number(info.usage_percentage) || 0));
      const state = info.critical ? 'critical' : info.low_space_warning ? 'warning' : 'ok';
      const fill = h('div', { class: 'bar-fill' });
      fill.style.width = `${pct}%`;
      const warning = info.critical
        ? 'Storage is critically low: new recordings and snapshots are refused.'
        : info.low_space_warning ? 'Storage is running low: delete files or tighten the retention policy.' : '';
      clear(box,
        h('div', { class: 'storage-head' },
          h('h2', { id: 'storage-title' }, 'Storage'),
          h('span', {}, `${formatBytes(info.used_space)} of ${formatBytes(info.total_space)} used (${pct.toFixed(1)}%)`)),
        h('div', {
          class: 'bar', role: 'meter', 'aria-labelledby': 'storage-title', 'aria-valuemin': '0', 'aria-valuemax': '100',
          'aria-valuenow': pct.toFixed(1), 'aria-valuetext': `${pct.toFixed(1)}% used`,
        }, fill),
        h('p', { class: 'muted small' }, `Recordings ${formatBytes(info.recordings_size)} · Snapshots ${formatBytes(info.snapshots_size)} · Free ${formatBytes(info.available_space)}`),
        warning ? h('p', { class: 'storage-warning', role: 'alert' }, warning) : null);
      box.dataset.state = state;
      box.hidden = false;
    } catch (err) {
      clear(box, h('p', { class: 'error' }, describeError(err, 'Loading storage usage')));
      box.hidden = false;
    }
  }
}

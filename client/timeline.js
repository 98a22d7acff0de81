// Timeline view: one camera's continuous segments and motion events over the last hours.
// Click a segment to play it, an event to play its clip (or cut one), or export a range.

import { $, busy, clear, describeError, formatBytes, formatDate, h, notify, sameOriginUrl } from './ui.js';

const SEGMENT_PAGE = 2000;
const AUTO_REFRESH_MS = 15000; // new segments appear while the view is open

export class TimelineView {
  constructor(app) {
    this.app = app;
    this.visible = false;
    this.cameras = [];
    this.segments = [];
    this.events = [];
    this.range = null; // {start, end} in ms
    this.seq = 0;
    this.refreshTimer = null;
    this.autoTimer = null;
    this.bind();
  }

  bind() {
    $('#timeline-camera').addEventListener('change', () => this.load());
    $('#timeline-hours').addEventListener('change', () => this.load());
    $('#timeline-refresh').addEventListener('click', (ev) => busy(ev.currentTarget, () => this.load(), 'Refreshing'));
    $('#timeline-mode-form').addEventListener('submit', (ev) => this.setMode(ev));
    $('#timeline-export-form').addEventListener('submit', (ev) => this.exportClip(ev));
  }

  reset() {
    this.cameras = [];
    clear($('#timeline-camera'));
    clear($('#timeline-bar'));
    clear($('#timeline-events'));
    $('#timeline-player').hidden = true;
  }

  onShow() {
    this.visible = true;
    if (this.app.connected) this.start();
    clearInterval(this.autoTimer);
    this.autoTimer = setInterval(() => {
      if (this.visible && this.app.connected && !document.hidden) this.load();
    }, AUTO_REFRESH_MS);
  }

  onHide() {
    this.visible = false;
    clearInterval(this.autoTimer);
  }

  onReady() {
    if (this.visible) this.start();
  }

  onNotification(method, params) {
    if (!this.visible || method !== 'motion_event') return;
    if (params.device !== $('#timeline-camera').value) return;
    clearTimeout(this.refreshTimer);
    this.refreshTimer = setTimeout(() => this.load(), 300);
  }

  async start() {
    this.app.call('subscribe_events', { topics: ['motion.*'] }).catch(() => {});
    const listing = await this.app.call('get_camera_list');
    const select = $('#timeline-camera');
    const previous = select.value;
    this.cameras = listing.cameras.map((c) => c.device);
    clear(select, ...listing.cameras.map((c) => h('option', { value: c.device }, c.name || c.device)));
    if (this.cameras.includes(previous)) select.value = previous;
    await this.load();
  }

  async load() {
    const device = $('#timeline-camera').value;
    if (!device) {
      clear($('#timeline-bar'), h('p', { class: 'muted' }, 'No camera.'));
      return;
    }
    const seq = ++this.seq;
    const hours = Number($('#timeline-hours').value) || 3;
    const end = Date.now();
    const start = end - hours * 3600 * 1000;
    const span = { start: new Date(start).toISOString(), end: new Date(end).toISOString() };
    let mode;
    let segments;
    let events;
    try {
      const answers = await this.app.batch([
        ['get_recording_mode', { device }],
        ['list_segments', { device, ...span, limit: SEGMENT_PAGE }],
        ['list_events', { device, ...span, limit: 500 }],
      ]);
      for (const answer of answers) if (answer.error) throw answer.error;
      [mode, segments, events] = answers.map((answer) => answer.result);
    } catch (err) {
      if (seq === this.seq) clear($('#timeline-bar'), h('p', { class: 'error' }, describeError(err, 'Loading the timeline')));
      return;
    }
    if (seq !== this.seq) return;
    this.range = { start, end };
    this.segments = segments.segments;
    this.events = events.events;
    this.renderMode(mode);
    this.renderBar();
    this.renderEvents();
  }

  renderMode(mode) {
    $('#timeline-mode').value = mode.mode;
    const state = mode.active ? 'recording' : (mode.mode === 'off' ? 'off' : 'waiting for the camera');
    $('#timeline-mode-state').textContent = `${mode.mode} (${state}), ${mode.segment_seconds} s segments`;
    this.app.applyRole($('#view-timeline'));
  }

  position(iso) {
    const { start, end } = this.range;
    const t = new Date(iso).getTime();
    return Math.min(100, Math.max(0, ((t - start) / (end - start)) * 100));
  }

  renderBar() {
    const bar = $('#timeline-bar');
    const items = [];
    for (const seg of this.segments) {
      const left = this.position(seg.start_time);
      const width = Math.max(0.1, this.position(seg.end_time) - left);
      items.push(placed(h('button', {
        type: 'button',
        class: 'tl-segment',
        title: `${formatDate(seg.start_time)} – ${formatDate(seg.end_time)} (${formatBytes(seg.file_size)})`,
        'aria-label': `Segment ${formatDate(seg.start_time)}, ${Math.round(seg.duration)} s`,
        dataset: { filename: seg.filename },
        onclick: () => this.playSegment(seg),
      }), left, width));
    }
    for (const ev of this.events) {
      const left = this.position(ev.start_time);
      const width = Math.max(0.4, this.position(ev.end_time || ev.start_time) - left);
      items.push(placed(h('button', {
        type: 'button',
        class: 'tl-event',
        title: `Motion ${formatDate(ev.start_time)}`,
        'aria-label': `Motion event ${formatDate(ev.start_time)}`,
        dataset: { event: ev.id },
        onclick: () => this.openEvent(ev),
      }), left, width));
    }
    const summary = this.segments.length
      ? `${this.segments.length} segments, ${this.events.length} motion events`
      : 'No footage in this period.';
    $('#timeline-summary').textContent = summary;
    clear(bar, ...items);
  }

  renderEvents() {
    const list = $('#timeline-events');
    clear(list, ...this.events.slice(0, 50).map((ev) => h('li', {},
      h('button', { type: 'button', class: 'btn btn-small', onclick: () => this.openEvent(ev) },
        `${formatDate(ev.start_time)} · score ${ev.peak_score}`),
      ev.clip ? h('span', { class: 'muted' }, ` clip ${ev.clip}`) : null)));
  }

  select(startIso, endIso) {
    $('#timeline-start').value = startIso;
    $('#timeline-end').value = endIso;
  }

  play(url, label) {
    const player = $('#timeline-player');
    player.hidden = false;
    const video = $('#timeline-video');
    video.src = sameOriginUrl(url);
    $('#timeline-playing').textContent = label;
    video.play().catch(() => {});
  }

  playSegment(seg) {
    this.select(seg.start_time, seg.end_time);
    this.play(seg.download_url, `Segment ${formatDate(seg.start_time)}`);
  }

  async openEvent(ev) {
    const end = ev.end_time || new Date().toISOString();
    this.select(ev.start_time, end);
    if (ev.clip_url) {
      this.play(ev.clip_url, `Motion clip ${ev.clip}`);
    } else if (this.app.atLeast('operator')) {
      await this.cut(ev.start_time, end);
    }
  }

  async cut(start, end) {
    const device = $('#timeline-camera').value;
    const clip = await this.app.call('export_clip', { device, start, end }, { timeout: 120000 });
    $('#timeline-export-status').textContent = `Clip ${clip.filename}: ${formatDate(clip.start_time)} – ${formatDate(clip.end_time)}`;
    notify(`Clip ${clip.filename} saved (${formatBytes(clip.file_size)}).`);
    this.play(clip.download_url, `Clip ${clip.filename}`);
    return clip;
  }

  async exportClip(ev) {
    ev.preventDefault();
    const start = $('#timeline-start').value.trim();
    const end = $('#timeline-end').value.trim();
    const status = $('#timeline-export-status');
    if (!start || !end) {
      status.textContent = 'Pick a segment or an event first, or type ISO times.';
      return;
    }
    status.textContent = 'Exporting…';
    const clip = await busy(ev.submitter, () => this.cut(start, end), 'Export');
    if (!clip) status.textContent = 'The clip could not be cut.';
  }

  async setMode(ev) {
    ev.preventDefault();
    const device = $('#timeline-camera').value;
    const mode = $('#timeline-mode').value;
    try {
      const stored = await this.app.call('set_recording_mode', { device, mode });
      notify(`Recording mode of ${device}: ${stored.mode}.`);
      this.renderMode(stored);
    } catch (err) {
      notify(describeError(err, 'Setting the mode'), 'error');
    }
  }
}

/** Positions through the CSSOM: the client's CSP allows no inline style attributes. */
function placed(el, left, width) {
  el.style.left = `${left}%`;
  el.style.width = `${width}%`;
  return el;
}

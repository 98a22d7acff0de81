// Cameras view: live list, per-camera actions, recording timers, previews and live view.

import {
  $, busy, clear, copyText, describeError, formatBytes, formatDate, formatDuration, formDialog,
  h, notify, notifyError, sameOriginUrl,
} from './ui.js';
import { canPlayHls, playHls, playHlsJs, playWhep, whepEndpoint } from './live.js';
import { TuningPanel } from './tuning.js';

const PREVIEW_INTERVAL_MS = 5000;
const MEDIA_TIMEOUT_MS = 45000;
const STATUS_LABEL = { CONNECTED: 'Connected', DISCONNECTED: 'Disconnected', ERROR: 'Error' };
const STREAM_LABEL = { rtsp: 'RTSP', hls: 'HLS', webrtc: 'WebRTC page', whep: 'WHEP' };

export class CamerasView {
  constructor(app) {
    this.app = app;
    this.cards = new Map();
    this.recordings = new Map();
    this.rendered = false;
    this.tick = null;
    this.role = null;
  }

  reset() {
    for (const card of this.cards.values()) card.destroy();
    this.cards.clear();
    this.recordings.clear();
    clear($('#camera-list'));
    $('#camera-summary').textContent = '';
    $('#cameras-empty').hidden = true;
    this.syncTimer();
  }

  onReady() {
    if (this.role !== this.app.role) {
      this.reset();
      this.role = this.app.role;
    }
    this.expireRecordings();
    this.load();
  }

  onConnection(state) {
    for (const card of this.cards.values()) card.refreshControls();
    if (state !== 'connected' && state !== 'stopped') {
      $('#camera-summary').textContent = this.cards.size ? 'Waiting for the connection…' : '';
      if (!this.cards.size) {
        const empty = $('#cameras-empty');
        empty.hidden = false;
        empty.classList.remove('error');
        empty.textContent = state === 'reconnecting'
          ? 'The server cannot be reached right now; retrying automatically…' : 'Connecting to the server…';
      }
    }
  }

  onVisibility(visible) {
    for (const card of this.cards.values()) card.onVisibility(visible);
  }

  async load() {
    const empty = $('#cameras-empty');
    if (!this.cards.size) {
      empty.hidden = false;
      empty.classList.remove('error');
      empty.textContent = 'Loading cameras…';
    }
    try {
      const result = await this.app.call('get_camera_list');
      this.render(result.cameras || []);
    } catch (err) {
      if (!this.app.connected) return;
      empty.hidden = false;
      empty.classList.add('error');
      empty.textContent = describeError(err, 'Loading the camera list');
    }
  }

  render(cameras) {
    const seen = new Set();
    for (const camera of cameras) {
      seen.add(camera.device);
      this.upsert(camera);
    }
    for (const [device, card] of this.cards) {
      if (!seen.has(device)) {
        card.destroy();
        this.cards.delete(device);
      }
    }
    this.summarize();
    if (!this.rendered) {
      this.rendered = true;
      performance.mark('cs:cameras-rendered');
    }
  }

  upsert(camera) {
    let card = this.cards.get(camera.device);
    if (!card) {
      card = new CameraCard(this, camera);
      this.cards.set(camera.device, card);
      const list = $('#camera-list');
      const after = [...this.cards.keys()].sort().find((d) => d > camera.device);
      const before = after ? this.cards.get(after)?.root : null;
      if (before && before.parentNode === list) list.insertBefore(card.root, before);
      else list.append(card.root);
    } else {
      card.update(camera);
    }
    this.syncServerRecording(camera);
  }

  /** Servers that add `recording` to the camera object tell us the state on (re)load. */
  syncServerRecording(camera) {
    if (!('recording' in camera)) return;
    const rec = camera.recording;
    if (rec && (rec.filename || rec.start_time)) {
      const current = this.recordings.get(camera.device);
      if (current && current.filename === rec.filename) return;
      this.setRecording(camera.device, {
        filename: rec.filename,
        startMs: Date.parse(rec.start_time) || Date.now(),
        duration: rec.duration,
      });
    } else if (this.recordings.has(camera.device)) {
      this.setRecording(camera.device, null);
    }
  }

  /** After a reconnect: timed recordings whose time is over ended while we were away. */
  expireRecordings() {
    for (const [device, rec] of [...this.recordings]) {
      if (rec.duration && Date.now() - rec.startMs > (rec.duration + 5) * 1000) this.setRecording(device, null);
    }
  }

  summarize() {
    const cards = [...this.cards.values()];
    const connected = cards.filter((c) => c.camera.status === 'CONNECTED').length;
    const empty = $('#cameras-empty');
    empty.classList.remove('error');
    if (!cards.length) {
      empty.hidden = false;
      empty.textContent = 'No cameras found. Plug in a USB camera or configure a source: it appears here automatically.';
    } else {
      empty.hidden = true;
    }
    $('#camera-summary').textContent = cards.length
      ? `${connected} of ${cards.length} camera${cards.length === 1 ? '' : 's'} connected` : '';
  }

  onNotification(method, params) {
    if (method === 'camera_status_update' && params.device && params.forgotten) {
      const card = this.cards.get(params.device);
      if (card) {
        card.destroy();
        this.cards.delete(params.device);
        this.summarize();
        notify(`Camera ${params.name || params.device} was removed.`);
      }
    } else if (method === 'camera_status_update' && params.device) {
      const known = this.cards.has(params.device);
      const { topic, ...camera } = params;
      const previous = this.cards.get(params.device)?.camera.status;
      this.upsert(camera);
      this.summarize();
      if (!known) notify(`Camera ${camera.name || camera.device} appeared.`);
      else if (previous !== camera.status) {
        notify(`Camera ${camera.name || camera.device} is ${STATUS_LABEL[camera.status] || camera.status}.`,
          camera.status === 'CONNECTED' ? 'info' : 'warning');
      }
    } else if (method === 'recording_status_update' && params.device) {
      this.onRecordingUpdate(params);
    } else if (method === 'camera_controls' && params.device) {
      this.cards.get(params.device)?.tuning.onControls(params);
    }
  }

  onRecordingUpdate(params) {
    const { device, status, filename, reason } = params;
    if (status === 'STARTED') {
      if (!this.recordings.has(device)) {
        this.setRecording(device, { filename, startMs: Date.now(), duration: params.duration });
      }
      return;
    }
    const current = this.recordings.get(device);
    if (current && filename && current.filename && current.filename !== filename) return;
    this.setRecording(device, null);
    const name = this.cards.get(device)?.camera.name || device;
    if (status === 'ERROR') {
      const why = reason === 'camera_disconnected' ? 'the camera was disconnected' : (reason || 'an error');
      notify(`Recording on ${name} stopped because of ${why}. ${filename ? `Saved as ${filename}.` : ''}`, 'error');
    } else {
      const why = reason === 'duration_reached' ? ' (duration reached)' : '';
      notify(`Recording on ${name} finished${why}: ${filename || ''}`);
    }
  }

  setRecording(device, recording) {
    if (recording) this.recordings.set(device, recording);
    else this.recordings.delete(device);
    this.cards.get(device)?.updateRecording();
    this.syncTimer();
  }

  syncTimer() {
    if (this.recordings.size && !this.tick) {
      this.tick = setInterval(() => {
        for (const device of this.recordings.keys()) this.cards.get(device)?.updateTimer();
      }, 1000);
    } else if (!this.recordings.size && this.tick) {
      clearInterval(this.tick);
      this.tick = null;
    }
  }
}

class CameraCard {
  constructor(view, camera) {
    this.view = view;
    this.app = view.app;
    this.camera = camera;
    this.live = null;
    this.previewTimer = null;
    this.previewRun = 0;
    this.capsLoaded = false;
    this.build();
    this.update(camera);
  }

  get recording() {
    return this.view.recordings.get(this.camera.device);
  }

  build() {
    const id = `cam-${this.camera.device}`;
    const canOperate = this.app.atLeast('operator');
    this.title = h('h2', { id: `${id}-title`, class: 'camera-name' });
    this.badge = h('span', { class: 'badge' });
    this.meta = h('p', { class: 'camera-meta' });
    this.timer = h('span', { class: 'rec-timer', role: 'timer' });
    this.recBox = h('p', { class: 'rec', hidden: true }, h('span', { class: 'rec-dot', 'aria-hidden': 'true' }), 'Recording ', this.timer);
    this.recStatus = h('p', { class: 'visually-hidden', 'aria-live': 'polite' });

    this.actions = h('div', { class: 'actions' });
    if (canOperate) {
      this.snapButton = h('button', { type: 'button', class: 'btn', onclick: () => this.takeSnapshot() }, 'Take snapshot');
      this.recButton = h('button', { type: 'button', class: 'btn btn-record', onclick: () => this.toggleRecording() }, 'Start recording');
      this.timedButton = h('button', { type: 'button', class: 'btn', onclick: () => this.timedRecording() }, 'Timed recording…');
      this.actions.append(this.snapButton, this.recButton, this.timedButton);
    } else {
      this.actions.append(h('p', { class: 'muted small' }, 'Viewer role: snapshots and recordings need an operator.'));
    }

    this.previewImg = h('img', { alt: '', width: 640, height: 480 });
    this.previewCaption = h('figcaption');
    this.preview = h('figure', { class: 'preview', hidden: true }, this.previewImg, this.previewCaption);

    this.liveBody = h('div', { class: 'live-body' });
    this.liveDetails = h('details', { class: 'live' }, h('summary', {}, 'Live view'), this.liveBody);
    this.liveDetails.addEventListener('toggle', () => (this.liveDetails.open ? this.startLive() : this.stopLive()));

    this.capsBody = h('div', { class: 'caps-body' }, 'Loading…');
    this.capsDetails = h('details', { class: 'caps' }, h('summary', {}, 'Capabilities'), this.capsBody);
    this.capsDetails.addEventListener('toggle', () => this.capsDetails.open && this.loadCapabilities());

    this.plainBody = h('div', { class: 'plain-body' }, 'Loading…');
    this.plainDetails = h('details', { class: 'plain-urls' }, h('summary', {}, 'Snapshot and MJPEG URLs'), this.plainBody);
    this.plainDetails.addEventListener('toggle', () => this.plainDetails.open && this.loadPlainUrls());

    this.streamsBody = h('div', { class: 'streams-body' });
    this.streamsDetails = h('details', { class: 'streams', hidden: true }, h('summary', {}, 'Stream URLs'), this.streamsBody);
    this.streamsDetails.addEventListener('toggle', () => this.streamsDetails.open && this.refreshStreamUrls());
    this.tuning = new TuningPanel(this);

    this.article = h('article', { class: 'card camera', 'aria-labelledby': `${id}-title`, dataset: { device: this.camera.device } },
      h('header', { class: 'camera-head' }, this.title, this.badge),
      this.meta, this.recBox, this.recStatus, this.actions, this.preview,
      this.liveDetails, this.streamsDetails, this.plainDetails, this.capsDetails, this.tuning.details);
    this.root = h('li', { class: 'camera-item' }, this.article);
  }

  update(camera) {
    const old = this.camera;
    this.camera = camera;
    this.title.textContent = camera.name || camera.device;
    this.badge.textContent = STATUS_LABEL[camera.status] || camera.status;
    this.badge.className = `badge badge-${String(camera.status).toLowerCase()}`;
    this.article.dataset.status = camera.status;
    this.meta.textContent = [camera.device, camera.resolution, camera.fps ? `${camera.fps} fps` : null]
      .filter(Boolean).join(' · ');
    this.renderStreams();
    this.refreshControls();
    this.tuning?.onCameraChanged(old, camera);
    if (old.status !== camera.status) {
      this.capsLoaded = false;
      if (this.liveDetails.open) {
        this.stopLive();
        this.startLive();
      }
    }
  }

  urlRow(kind, label, url) {
    const inputId = `url-${this.camera.device}-${kind}`;
    const input = h('input', { id: inputId, type: 'text', readonly: true, value: url, class: 'url' });
    const copy = h('button', {
      type: 'button', class: 'btn btn-small', 'aria-label': `Copy ${label} URL`,
      onclick: async () => {
        const ok = await copyText(url);
        notify(ok ? `${label} URL copied.` : 'Copy failed: select the text and copy it.', ok ? 'info' : 'error');
      },
    }, 'Copy');
    return h('div', { class: 'url-row' }, h('label', { for: inputId }, label), input, copy);
  }

  async loadPlainUrls() {
    try {
      const urls = await this.app.call('get_camera_urls', { device: this.camera.device });
      clear(this.plainBody,
        this.urlRow('snapshot', 'Snapshot', urls.snapshot_url),
        this.urlRow('mjpeg', 'MJPEG', urls.mjpeg_url),
        h('p', { class: 'muted small' }, `For tools that take a plain image or MJPEG URL. Valid until ${formatDate(urls.expires_at)}.`));
    } catch (err) {
      clear(this.plainBody, h('p', { class: 'error' }, describeError(err, 'Loading the URLs')));
    }
  }

  renderStreams() {
    const streams = Object.entries(this.camera.streams || {}).filter(([, url]) => url);
    this.streamsDetails.hidden = streams.length === 0;
    if (!streams.length) return;
    const rows = streams.map(([kind, url]) => {
      const inputId = `url-${this.camera.device}-${kind}`;
      const input = h('input', { id: inputId, type: 'text', readonly: true, value: url, class: 'url' });
      const copy = h('button', {
        type: 'button', class: 'btn btn-small', 'aria-label': `Copy ${STREAM_LABEL[kind] || kind} URL`,
        onclick: async () => {
          const ok = await copyText(url);
          notify(ok ? `${STREAM_LABEL[kind] || kind} URL copied.` : 'Copy failed: select the text and copy it.', ok ? 'info' : 'error');
        },
      }, 'Copy');
      return h('div', { class: 'url-row' }, h('label', { for: inputId }, STREAM_LABEL[kind] || kind), input, copy);
    });
    // Stream URLs carry a short-lived token (stream access control): say until when.
    const expiry = streams.map(([, url]) => /[?&]token=cst1\.(\d+)\./.exec(url)).find(Boolean);
    if (expiry) {
      const until = formatDate(new Date(Number(expiry[1]) * 1000).toISOString());
      rows.push(h('p', { class: 'muted small' }, `Start playing before ${until}; playback then continues.`));
    }
    clear(this.streamsBody, rows);
  }

  /** Fresh stream URLs (tokens issued to this session) when the list is opened. */
  async refreshStreamUrls() {
    try {
      const info = await this.app.call('get_stream_url', { device: this.camera.device });
      if (info.streams && Object.keys(info.streams).length) {
        this.camera = { ...this.camera, streams: info.streams };
        this.renderStreams();
      }
    } catch {
      // MediaMTX unreachable: the URLs from the camera list stay (they may have expired).
    }
  }

  refreshControls() {
    if (!this.snapButton) return;
    const online = this.app.connected;
    const connected = this.camera.status === 'CONNECTED';
    const recording = Boolean(this.recording);
    if (this.snapButton.getAttribute('aria-busy') !== 'true') this.snapButton.disabled = !online || !connected;
    if (this.recButton.getAttribute('aria-busy') !== 'true') this.recButton.disabled = !online || (!connected && !recording);
    this.timedButton.disabled = !online || !connected || recording;
    this.recButton.textContent = recording ? 'Stop recording' : 'Start recording';
    this.recButton.classList.toggle('is-recording', recording);
    this.recButton.setAttribute('aria-pressed', String(recording));
  }

  updateRecording() {
    const recording = this.recording;
    this.recBox.hidden = !recording;
    this.article.classList.toggle('is-recording', Boolean(recording));
    this.recStatus.textContent = recording
      ? `Recording started on ${this.camera.name || this.camera.device}.` : '';
    this.updateTimer();
    this.refreshControls();
  }

  updateTimer() {
    const recording = this.recording;
    if (!recording) return;
    const elapsed = Math.max(0, (Date.now() - recording.startMs) / 1000);
    this.timer.textContent = recording.duration
      ? `${formatDuration(Math.min(elapsed, recording.duration))} / ${formatDuration(recording.duration)}`
      : formatDuration(elapsed);
  }

  onVisibility(visible) {
    if (!this.liveDetails.open) return;
    if (visible) this.startLive();
    else this.stopLive();
  }

  destroy() {
    this.stopLive();
    this.root.remove();
  }

  // --- actions ----------------------------------------------------------------------------

  async takeSnapshot() {
    const result = await busy(this.snapButton, () => this.app.call(
      'take_snapshot', { device: this.camera.device }, { timeout: MEDIA_TIMEOUT_MS }), 'Snapshot');
    this.refreshControls();
    if (!result) return;
    this.showPreview(result);
    notify(`Snapshot saved: ${result.filename}`);
  }

  showPreview(result) {
    this.preview.hidden = false;
    this.previewImg.alt = `Snapshot of ${this.camera.name || this.camera.device} taken ${formatDate(result.timestamp)}`;
    this.previewImg.src = sameOriginUrl(result.download_url);
    clear(this.previewCaption,
      h('span', {}, `${result.filename} · ${formatBytes(result.file_size)} · ${formatDate(result.timestamp)}`), ' ',
      h('a', { href: result.download_url, download: result.filename }, 'Download'));
  }

  async toggleRecording() {
    if (this.recording) {
      let notRecording = false;
      const result = await busy(this.recButton, async () => {
        try {
          return await this.app.call('stop_recording', { device: this.camera.device }, { timeout: MEDIA_TIMEOUT_MS });
        } catch (err) {
          notRecording = err.code === -32020;
          throw err;
        }
      }, 'Stopping the recording');
      if (notRecording) this.view.setRecording(this.camera.device, null);
      if (result) {
        this.view.setRecording(this.camera.device, null);
        notify(`Recording saved: ${result.filename} (${formatDuration(result.duration)}, ${formatBytes(result.file_size)})`);
      }
      this.refreshControls();
      return;
    }
    await this.startRecording({});
  }

  async startRecording(extra) {
    const params = { device: this.camera.device, ...extra };
    try {
      this.recButton.disabled = true;
      this.recButton.setAttribute('aria-busy', 'true');
      const result = await this.app.call('start_recording', params, { timeout: MEDIA_TIMEOUT_MS });
      this.view.setRecording(this.camera.device, {
        filename: result.filename,
        startMs: Date.parse(result.start_time) || Date.now(),
        duration: result.duration,
      });
    } catch (err) {
      if (err.code === -32020 && err.data?.state === 'RECORDING') {
        // Started elsewhere (another client): show it as recording so it can be stopped.
        this.view.setRecording(this.camera.device, { filename: null, startMs: Date.now(), duration: null });
      }
      notifyError(err, 'Starting the recording');
    } finally {
      this.recButton.removeAttribute('aria-busy');
      this.refreshControls();
    }
  }

  async timedRecording() {
    const durationId = `dur-${this.camera.device}`;
    const formatId = `fmt-${this.camera.device}`;
    const body = h('div', { class: 'stack' },
      h('label', { for: durationId }, 'Duration (seconds, 1 to 86400)'),
      h('input', { id: durationId, name: 'duration', type: 'number', min: '1', max: '86400', step: '1', value: '10', required: true, inputmode: 'numeric' }),
      h('label', { for: formatId }, 'Format'),
      h('select', { id: formatId, name: 'format' },
        h('option', { value: 'fmp4' }, 'Fragmented MP4 (safe if interrupted)'),
        h('option', { value: 'mp4' }, 'MP4'),
        h('option', { value: 'mkv' }, 'Matroska (MKV)')));
    const data = await formDialog({
      title: `Timed recording – ${this.camera.name || this.camera.device}`, body, submitLabel: 'Start recording',
    });
    if (!data) return;
    await this.startRecording({ duration: Number(data.get('duration')), format: data.get('format') });
  }

  async loadCapabilities() {
    if (this.capsLoaded) return;
    clear(this.capsBody, 'Loading…');
    try {
      const caps = await this.app.call('get_camera_capabilities', { device: this.camera.device });
      this.capsLoaded = true;
      const fps = Object.entries(caps.fps_options || {})
        .map(([res, rates]) => `${res}: ${rates.join(', ')}`).join('; ');
      const rows = [
        ['Formats', (caps.formats || []).join(', ') || '–'],
        ['Resolutions', (caps.resolutions || []).join(', ') || '–'],
        ['Frame rates', fps || '–'],
        ['Validation', caps.validation_status || '–'],
      ];
      clear(this.capsBody, h('dl', { class: 'kv' }, rows.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)])));
    } catch (err) {
      clear(this.capsBody, h('p', { class: 'error' }, describeError(err, 'Loading capabilities')));
    }
  }

  // --- live view --------------------------------------------------------------------------

  async startLive() {
    this.stopLive();
    const run = ++this.previewRun;
    let streams = this.camera.streams || {};
    const status = h('p', { class: 'live-status muted', role: 'status' });
    if (this.camera.status !== 'CONNECTED') {
      clear(this.liveBody, h('p', { class: 'muted' }, 'The camera is not connected.'));
      return;
    }
    if (streams.webrtc || streams.hls) {
      const video = h('video', { muted: true, autoplay: true, playsInline: true, controls: true, class: 'live-video', 'aria-label': `Live video of ${this.camera.name || this.camera.device}` });
      video.muted = true;
      clear(this.liveBody, video, status);
      status.textContent = 'Connecting to the stream…';
      try {
        // Fresh URLs: their stream tokens are short-lived and issued to this session.
        streams = (await this.ensureStreaming()) || streams;
        if (run !== this.previewRun) return;
        let player = null;
        let firstError = null;
        if (streams.webrtc) {
          player = await playWhep(video, whepEndpoint(streams)).catch((err) => {
            firstError = err;
            return null;
          });
        }
        // hls.js where Media Source Extensions exist (better LL-HLS support), else native HLS.
        if (!player && streams.hls) player = 'MediaSource' in window ? await playHlsJs(video, streams.hls) : canPlayHls(video) ? await playHls(video, streams.hls) : null;
        if (!player) throw firstError || new Error('This browser cannot play the stream.');
        if (run !== this.previewRun) {
          player.close();
          return;
        }
        this.live = player;
        status.textContent = `Live over ${player.kind}.`;
        return;
      } catch (err) {
        if (run !== this.previewRun) return;
        video.replaceWith(h('p', { class: 'live-note' }, `${describeError(err, 'Live video')} Showing MJPEG instead.`));
        status.textContent = '';
      }
    }
    this.startMjpeg(run, status);
  }

  async startMjpeg(run, status) {
    const img = h('img', { class: 'live-img', alt: `Live picture of ${this.camera.name || this.camera.device}`, width: 640, height: 480, hidden: true });
    if (!status.isConnected) clear(this.liveBody, img, status);
    else this.liveBody.prepend(img);
    status.textContent = 'Connecting to the MJPEG stream…';
    try {
      const urls = await this.app.call('get_camera_urls', { device: this.camera.device });
      if (run !== this.previewRun) return;
      img.addEventListener('load', () => {
        img.hidden = false;
        status.textContent = 'Live MJPEG from the camera.';
      }, { once: true });
      img.addEventListener('error', () => {
        if (run !== this.previewRun) return;
        img.remove();
        if (this.app.atLeast('operator')) this.startSnapshotPreview(run, status);
        else status.textContent = 'The MJPEG stream is not available.';
      }, { once: true });
      img.src = sameOriginUrl(urls.mjpeg_url);
      this.mjpegImg = img;
    } catch (err) {
      if (run !== this.previewRun) return;
      img.remove();
      if (this.app.atLeast('operator')) this.startSnapshotPreview(run, status);
      else status.textContent = describeError(err, 'Live view');
    }
  }

  /** Make sure the camera publishes; resolves with its current stream URLs. */
  async ensureStreaming() {
    let info = null;
    try {
      info = await this.app.call('get_stream_url', { device: this.camera.device });
      if (info.available || !this.app.atLeast('operator')) return info.streams;
    } catch (err) {
      if (!this.app.atLeast('operator')) throw err;
    }
    const started = await this.app.call('start_streaming', { device: this.camera.device }, { timeout: MEDIA_TIMEOUT_MS });
    return started.streams || (info && info.streams);
  }

  startSnapshotPreview(run, status) {
    const img = h('img', { class: 'live-img', alt: `Latest picture of ${this.camera.name || this.camera.device}`, width: 640, height: 480, hidden: true });
    if (!status.isConnected) clear(this.liveBody, img, status);
    else this.liveBody.prepend(img);
    const note = 'Refreshes every 5 s while open (each picture is saved to Snapshots).';
    status.textContent = `Taking a picture… ${note}`;
    let failures = 0;
    const step = async () => {
      if (run !== this.previewRun) return;
      if (this.app.connected && this.camera.status === 'CONNECTED') {
        try {
          const shot = await this.app.call('take_snapshot', { device: this.camera.device }, { timeout: MEDIA_TIMEOUT_MS });
          if (run !== this.previewRun) return;
          failures = 0;
          img.src = sameOriginUrl(shot.download_url);
          img.hidden = false;
          status.textContent = `Updated ${new Date().toLocaleTimeString()}. ${note}`;
        } catch (err) {
          if (run !== this.previewRun) return;
          failures += 1;
          status.textContent = describeError(err, 'Preview');
          if (failures >= 3) {
            status.textContent += ' Preview paused; close and reopen Live view to retry.';
            return;
          }
        }
      }
      this.previewTimer = setTimeout(step, PREVIEW_INTERVAL_MS);
    };
    step();
  }

  stopLive() {
    this.previewRun += 1;
    if (this.mjpegImg) {
      this.mjpegImg.removeAttribute('src'); // closes the MJPEG connection
      this.mjpegImg.hidden = true;
      this.mjpegImg = null;
    }
    clearTimeout(this.previewTimer);
    this.previewTimer = null;
    if (this.live) {
      this.live.close();
      this.live = null;
    }
  }
}

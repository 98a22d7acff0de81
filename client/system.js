// System view (admin): health, metrics summary, retention policy and cleanup.

import { $, busy, clear, describeError, formatBytes, formatDuration, h, notify } from './ui.js';

const REFRESH_MS = 10000;

function kv(rows) {
  return h('dl', { class: 'kv' }, rows.filter(([, v]) => v !== undefined && v !== null)
    .flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
}

function flatSection(section) {
  if (!section || typeof section !== 'object' || section.available === false) return null;
  const rows = [];
  for (const [key, value] of Object.entries(section)) {
    if (value === null || typeof value === 'object') continue;
    rows.push([key.replace(/_/g, ' '), String(value)]);
  }
  return rows.length ? rows.slice(0, 8) : null;
}

export class SystemView {
  constructor(app) {
    this.app = app;
    this.visible = false;
    this.timer = null;
    this.bind();
  }

  bind() {
    const form = $('#retention-form');
    const type = $('#policy-type');
    const sync = () => {
      $('#field-age').hidden = type.value !== 'age';
      $('#field-size').hidden = type.value !== 'size';
      $('#max-age').required = type.value === 'age';
      $('#max-size').required = type.value === 'size';
    };
    type.addEventListener('change', sync);
    sync();
    // Once the user edits the form, a policy arriving from the server must not overwrite it.
    const touched = (ev) => { if (ev.isTrusted) this.policyTouched = true; };
    form.addEventListener('input', touched);
    form.addEventListener('change', touched);
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      if (!form.reportValidity()) return;
      busy(form.querySelector('[type="submit"]'), () => this.savePolicy(), 'Saving the retention policy');
    });
    $('#cleanup').addEventListener('click', (ev) => busy(ev.currentTarget, () => this.cleanup(), 'Cleanup'));
    $('#system-refresh').addEventListener('click', (ev) => busy(ev.currentTarget, () => this.load(), 'Refreshing'));
  }

  reset() {
    this.onHide();
    clear($('#system-status'));
    clear($('#system-metrics'));
    $('#retention-status').textContent = '';
  }

  onShow() {
    this.visible = true;
    this.policyTouched = false;
    if (this.app.connected) {
      this.load();
      this.loadPolicy();
    }
    clearInterval(this.timer);
    this.timer = setInterval(() => this.app.connected && !document.hidden && this.load(), REFRESH_MS);
  }

  onHide() {
    this.visible = false;
    clearInterval(this.timer);
    this.timer = null;
  }

  onReady() {
    if (this.visible) {
      this.load();
      this.loadPolicy();
    }
  }

  /** Fill the retention form with the stored policy (not while the user is editing it). */
  async loadPolicy() {
    if (!this.app.atLeast('admin') || this.policyTouched) return;
    let policy;
    try {
      policy = await this.app.call('get_retention_policy');
    } catch {
      return; // the form keeps its defaults; saving still works
    }
    if (this.policyTouched) return;
    $('#policy-type').value = policy.policy_type;
    $('#policy-enabled').checked = policy.enabled;
    if (policy.max_age_days) $('#max-age').value = policy.max_age_days;
    if (policy.max_size_gb) $('#max-size').value = policy.max_size_gb;
    $('#policy-type').dispatchEvent(new Event('change'));
  }

  async load() {
    if (!this.app.atLeast('admin')) return;
    let answers;
    try {
      answers = await this.app.batch([['get_status'], ['get_metrics'], ['get_server_info']]);
    } catch (error) {
      answers = [{ error }, { error }, { error }];
    }
    const [status, metrics, info] = answers;
    this.renderStatus(status, info);
    this.renderMetrics(metrics);
  }

  renderStatus({ result, error }, info) {
    const box = $('#system-status');
    if (error) {
      clear(box, h('p', { class: 'error' }, describeError(error, 'Loading the status')));
      return;
    }
    const badgeClass = { HEALTHY: 'connected', DEGRADED: 'warning', UNHEALTHY: 'error' }[result.status] || 'disconnected';
    // API 1.1: components[name] is RUNNING|STOPPED|ERROR|STARTING|STOPPING; the health
    // (healthy|degraded|unhealthy|…) and its reason are in component_details[name].
    const details = result.component_details || {};
    const components = Object.entries(result.components || {}).map(([name, state]) => {
      const health = details[name]?.status;
      const reason = details[name]?.details?.reason;
      const tone = health === 'degraded' ? 'warning'
        : ({ RUNNING: 'connected', ERROR: 'error', STARTING: 'warning', STOPPING: 'warning' }[state] || 'disconnected');
      return h('li', { 'data-component': name },
        h('span', { class: `badge badge-${tone}` }, health === 'degraded' ? 'DEGRADED' : String(state)),
        ' ', name.replace(/_/g, ' '),
        reason ? h('span', { class: 'component-reason' }, ` — ${reason}`) : null);
    });
    const server = info?.result;
    clear(box,
      h('p', {}, h('span', { class: `badge badge-${badgeClass}`, id: 'health-badge' }, result.status)),
      kv([
        ['Version', result.version],
        ['API version', server?.api_version],
        ['Uptime', formatDuration(result.uptime)],
        ['Platform', server ? `Python ${server.python_version} · ${server.architecture}` : undefined],
        ['Formats', Array.isArray(server?.supported_formats) ? server.supported_formats.join(', ') : undefined],
      ]),
      components.length ? h('h3', {}, 'Components') : null,
      components.length ? h('ul', { class: 'components' }, components) : null);
  }

  renderMetrics({ result, error }) {
    const box = $('#system-metrics');
    if (error) {
      clear(box, h('p', { class: 'error' }, describeError(error, 'Loading metrics')));
      return;
    }
    const sys = result.system_metrics || {};
    const rpc = result.rpc_metrics || {};
    const latency = rpc.latency_ms || {};
    const errors = Object.entries(rpc.errors_by_code || {}).map(([code, n]) => `${code}: ${n}`).join(', ');
    const parts = [
      h('h3', {}, 'Process'),
      kv([
        ['CPU (daemon / host)', sys.cpu_percent !== undefined ? `${Number(sys.cpu_percent).toFixed(1)} % / ${Number(sys.cpu_usage ?? 0).toFixed(1)} %` : undefined],
        ['Memory (RSS)', sys.rss_bytes !== undefined ? formatBytes(sys.rss_bytes) : undefined],
        ['System memory', sys.memory_usage !== undefined ? `${sys.memory_usage} %` : undefined],
        ['Disk (recordings)', sys.disk_usage !== undefined ? `${sys.disk_usage} %` : undefined],
        ['Load average', Array.isArray(sys.load_average) ? sys.load_average.map((v) => v.toFixed(2)).join(' ') : undefined],
        ['Threads / open files', sys.threads !== undefined ? `${sys.threads} / ${sys.open_fds}` : undefined],
      ]),
      h('h3', {}, 'JSON-RPC'),
      kv([
        ['Connections', rpc.open_connections !== undefined ? `${rpc.open_connections} open, ${rpc.total_connections} total` : undefined],
        ['Requests', rpc.total_requests],
        ['Latency p50 / p95', latency.p50 !== undefined ? `${latency.p50} ms / ${latency.p95} ms` : undefined],
        ['Errors by code', errors || 'none'],
      ]),
    ];
    for (const [title, key] of [['Cameras', 'camera_metrics'], ['Recordings', 'recording_metrics'], ['Streams', 'stream_metrics']]) {
      const rows = flatSection(result[key]);
      if (rows) parts.push(h('h3', {}, title), kv(rows));
    }
    clear(box, parts);
  }

  async savePolicy() {
    const type = $('#policy-type').value;
    const params = { policy_type: type, enabled: $('#policy-enabled').checked };
    if (type === 'age') params.max_age_days = Number($('#max-age').value);
    if (type === 'size') params.max_size_gb = Number($('#max-size').value);
    const result = await this.app.call('set_retention_policy', params);
    const status = $('#retention-status');
    status.classList.remove('error');
    status.textContent = result.message ? `${result.message[0].toUpperCase()}${result.message.slice(1)}.` : 'Retention policy saved.';
  }

  async cleanup() {
    const result = await this.app.call('cleanup_old_files', undefined, { timeout: 120000 });
    const status = $('#retention-status');
    status.classList.remove('error');
    status.textContent = result.cleanup_executed
      ? `Cleanup done: ${result.files_deleted} file${result.files_deleted === 1 ? '' : 's'} deleted, ${formatBytes(result.space_freed)} freed.`
      : (result.message || 'Nothing to clean up.');
    notify(status.textContent);
  }
}

// Entry point: sign-in, connection state, navigation, and notification routing.

import { RpcClient } from './rpc.js';
import { $, describeError, notify, notifyError } from './ui.js';
import { CamerasView } from './cameras.js';
import { FilesView } from './files.js';
import { SystemView } from './system.js';
import { TimelineView } from './timeline.js';

const TOKEN_KEY = 'camera-service.token';
const WS_URL_KEY = 'camera-service.ws-url';
const ROLE_RANK = { viewer: 1, operator: 2, admin: 3 };
const VIEWS = ['cameras', 'timeline', 'files', 'system'];

class App {
  constructor() {
    this.rpc = null;
    this.role = null;
    this.signedIn = false;
    this.wsUrl = '';
    this.current = null;
    this.retryTimer = null;
    this.views = {
      cameras: new CamerasView(this),
      timeline: new TimelineView(this),
      files: new FilesView(this),
      system: new SystemView(this),
    };
  }

  atLeast(role) {
    return (ROLE_RANK[this.role] || 0) >= ROLE_RANK[role];
  }

  call(method, params, options) {
    if (!this.rpc) return Promise.reject(new Error('Not signed in.'));
    return this.rpc.call(method, params, options);
  }

  batch(calls) {
    if (!this.rpc) return Promise.reject(new Error('Not signed in.'));
    return this.rpc.batch(calls);
  }

  get connected() {
    return this.rpc?.state === 'connected';
  }

  async boot() {
    this.wsUrl = await resolveWsUrl();
    $('#ws-url').value = this.wsUrl;
    $('#signin-form').addEventListener('submit', (ev) => this.onSignIn(ev));
    $('#signout').addEventListener('click', () => this.signOut('You signed out.'));
    $('#retry').addEventListener('click', () => this.rpc?.retryNow());
    window.addEventListener('hashchange', () => {
      this.route();
      $(`#view-${this.current} h1`)?.focus();
    });
    window.addEventListener('online', () => this.rpc?.retryNow());
    document.addEventListener('visibilitychange', () => {
      if (!document.hidden) this.rpc?.retryNow();
      for (const view of Object.values(this.views)) view.onVisibility?.(!document.hidden);
    });
    window.addEventListener('unhandledrejection', (ev) => {
      ev.preventDefault();
      notifyError(ev.reason);
    });
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) {
      this.showShell();
      this.connect(token);
    } else {
      this.showSignIn();
    }
  }

  // --- sign-in ----------------------------------------------------------------------------

  showSignIn(message = '', isError = false) {
    this.signedIn = false;
    document.body.dataset.signedIn = 'false';
    $('#nav').hidden = true;
    $('#session').hidden = true;
    for (const name of VIEWS) $(`#view-${name}`).hidden = true;
    $('#view-signin').hidden = false;
    const status = $('#signin-status');
    status.textContent = message;
    status.classList.toggle('error', isError);
    $('#signin-submit').disabled = false;
    $('#token').focus();
  }

  onSignIn(ev) {
    ev.preventDefault();
    const token = $('#token').value.trim();
    const url = $('#ws-url').value.trim();
    const status = $('#signin-status');
    status.classList.add('error');
    if (!token) {
      status.textContent = 'Enter an API key or a JWT.';
      $('#token').focus();
      return;
    }
    if (!/^wss?:\/\/.+/i.test(url)) {
      status.textContent = 'The server address must start with ws:// or wss://.';
      $('.server-settings').open = true;
      $('#ws-url').focus();
      return;
    }
    if (url !== this.wsUrl) localStorage.setItem(WS_URL_KEY, url);
    this.wsUrl = url;
    status.classList.remove('error');
    status.textContent = 'Connecting…';
    $('#signin-submit').disabled = true;
    this.connect(token);
  }

  connect(token) {
    this.rpc?.stop();
    const rpc = new RpcClient(this.wsUrl, token);
    this.rpc = rpc;
    rpc.addEventListener('state', (ev) => rpc === this.rpc && this.onState(ev.detail));
    rpc.addEventListener('ready', (ev) => rpc === this.rpc && this.onReady(token, ev.detail.auth));
    rpc.addEventListener('autherror', (ev) => rpc === this.rpc && this.onAuthError(ev.detail.error));
    rpc.addEventListener('notification', (ev) => rpc === this.rpc && this.onNotification(ev.detail));
    rpc.start();
  }

  onAuthError(error) {
    const wasSignedIn = this.signedIn;
    this.rpc?.stop();
    this.rpc = null;
    sessionStorage.removeItem(TOKEN_KEY);
    for (const view of Object.values(this.views)) view.reset?.();
    const expired = /expired/i.test(error?.data?.reason || '');
    const text = expired ? 'Your session expired. Sign in again.'
      : wasSignedIn ? `Your credentials are no longer accepted. ${describeError(error)}`
        : describeError(error, 'Sign-in');
    this.showSignIn(text, true);
  }

  signOut(message) {
    this.rpc?.stop();
    this.rpc = null;
    this.role = null;
    sessionStorage.removeItem(TOKEN_KEY);
    for (const view of Object.values(this.views)) view.reset?.();
    $('#token').value = '';
    this.showSignIn(message);
  }

  onReady(token, auth) {
    const first = !this.signedIn;
    sessionStorage.setItem(TOKEN_KEY, token);
    this.role = auth.role;
    this.signedIn = true;
    document.body.dataset.signedIn = 'true';
    document.body.dataset.role = auth.role;
    const badge = $('#role-badge');
    badge.textContent = auth.role;
    badge.setAttribute('aria-label', `Role: ${auth.role}`);
    this.applyRole(document);
    if ($('#view-signin').hidden === false) {
      $('#token').value = '';
      this.showShell();
      $('#main').focus();
    }
    if (!first) notify('Reconnected to the server.');
    this.route();
    for (const view of Object.values(this.views)) view.onReady?.(first);
  }

  applyRole(root) {
    for (const el of root.querySelectorAll('[data-min-role]')) {
      const allowed = this.atLeast(el.dataset.minRole);
      if (!allowed) el.hidden = true;
      else if (el.dataset.hideUntilLoaded === undefined) el.hidden = false;
    }
  }

  showShell() {
    $('#view-signin').hidden = true;
    $('#nav').hidden = false;
    $('#session').hidden = false;
    this.route();
  }

  // --- connection state -------------------------------------------------------------------

  onState({ state, delayMs, retryAt, error }) {
    document.body.dataset.conn = state;
    clearInterval(this.retryTimer);
    const text = $('#conn-text');
    const countdown = $('#conn-countdown');
    const retry = $('#retry');
    retry.hidden = state !== 'reconnecting';
    countdown.textContent = '';
    const labels = {
      connecting: 'Connecting…',
      authenticating: 'Signing in…',
      connected: 'Connected',
      stopped: 'Disconnected',
      idle: 'Not connected',
    };
    if (state === 'reconnecting') {
      // The live region says it once; the countdown beside it is not announced every second.
      text.textContent = 'Reconnecting';
      text.title = error ? describeError(error) : '';
      const render = () => {
        const secs = Math.max(0, Math.ceil((retryAt - Date.now()) / 1000));
        countdown.textContent = `in ${secs} s`;
      };
      render();
      this.retryTimer = setInterval(render, 1000);
    } else {
      text.textContent = labels[state] || state;
      text.title = '';
    }
    if (!this.signedIn && !$('#view-signin').hidden) {
      const status = $('#signin-status');
      if (state === 'reconnecting') {
        status.classList.add('error');
        status.textContent = `${describeError(error)} Retrying in ${Math.ceil(delayMs / 1000)} s…`;
      } else if (state === 'connecting' || state === 'authenticating') {
        status.classList.remove('error');
        status.textContent = labels[state];
      }
    }
    for (const view of Object.values(this.views)) view.onConnection?.(state);
  }

  onNotification({ method, params }) {
    if (method === 'system_status_update') {
      if (params.message) notify(params.message, params.topic === 'system.shutdown' ? 'warning' : 'info');
    }
    for (const view of Object.values(this.views)) view.onNotification?.(method, params);
  }

  // --- navigation -------------------------------------------------------------------------

  route() {
    if (!$('#view-signin').hidden) return;
    let name = location.hash.replace('#', '') || 'cameras';
    if (!VIEWS.includes(name)) name = 'cameras';
    if (name === 'system' && this.role && !this.atLeast('admin')) name = 'cameras';
    for (const view of VIEWS) {
      $(`#view-${view}`).hidden = view !== name;
      const link = $(`#nav a[data-view="${view}"]`);
      if (view === name) link.setAttribute('aria-current', 'page');
      else link.removeAttribute('aria-current');
    }
    const changed = this.current !== name;
    this.current = name;
    if (changed) {
      for (const [view, obj] of Object.entries(this.views)) {
        if (view === name) obj.onShow?.();
        else obj.onHide?.();
      }
    }
  }
}

/** A ?ws= address is honoured only on this page's own host: a link must not be able to
 * send the credentials typed here to another server. */
function wsUrlFromQuery() {
  const value = new URLSearchParams(location.search).get('ws');
  if (!value) return null;
  try {
    const url = new URL(value);
    if ((url.protocol === 'ws:' || url.protocol === 'wss:') && url.hostname === location.hostname) return url.href;
  } catch {
    // not a URL: ignored
  }
  return null;
}

/** The WebSocket URL: ?ws=… (same host only), then an address the user entered before, then
 * the server's /client-config.json when it offers one, then ws(s)://<this host>:8002/ws. */
async function resolveWsUrl() {
  const fromQuery = wsUrlFromQuery();
  if (fromQuery) return fromQuery;
  const saved = localStorage.getItem(WS_URL_KEY);
  if (saved) return saved;
  const proto = location.protocol === 'https:' ? 'wss' : 'ws';
  const host = location.hostname || '127.0.0.1';
  const hostPart = host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
  try {
    const response = await fetch('client-config.json', { cache: 'no-store' });
    if (response.ok) {
      const config = await response.json();
      if (config.ws_url) return config.ws_url;
      if (config.ws_port) return `${proto}://${hostPart}:${config.ws_port}${config.ws_path || '/ws'}`;
    }
  } catch {
    // no server-provided configuration: fall back to the default port
  }
  return `${proto}://${hostPart}:8002/ws`;
}

new App().boot();

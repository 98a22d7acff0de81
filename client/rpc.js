// JSON-RPC 2.0 over WebSocket with automatic reconnect, re-authentication and resubscription.
//
// States (event "state"): idle, connecting, authenticating, connected, reconnecting, stopped.
// Events: "state" {state, attempt, delayMs, error}, "ready" {auth} (after every (re)auth +
// subscribe), "notification" {method, params}, "autherror" {error} (credentials refused:
// the client stops and the caller should ask for new credentials).

export const TOPICS = ['camera.*', 'recording.*', 'snapshot.taken', 'system.*'];

const BACKOFF_BASE_MS = 500;
const BACKOFF_MAX_MS = 10000;
const DEFAULT_TIMEOUT_MS = 20000;

export class RpcError extends Error {
  constructor(code, message, data) {
    super(message);
    this.name = 'RpcError';
    this.code = code;
    this.data = data;
  }
}

export class ConnectionLost extends Error {
  constructor(message = 'Not connected to the server.') {
    super(message);
    this.name = 'ConnectionLost';
  }
}

export function backoffDelay(attempt) {
  const exp = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** Math.max(0, attempt - 1));
  return Math.round(exp * (0.8 + Math.random() * 0.4));
}

export class RpcClient extends EventTarget {
  constructor(url, token) {
    super();
    this.url = url;
    this.token = token;
    this.ws = null;
    this.nextId = 1;
    this.pending = new Map();
    this.state = 'idle';
    this.attempt = 0;
    this.timer = null;
    this.auth = null;
    this.stopped = false;
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  setState(state, extra = {}) {
    this.state = state;
    this.emit('state', { state, attempt: this.attempt, ...extra });
  }

  start() {
    this.stopped = false;
    this.open();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      ws.close(1000, 'signed out');
    }
    this.failPending(new ConnectionLost('Signed out.'));
    this.setState('stopped');
  }

  /** Reconnect now instead of waiting for the backoff timer. */
  retryNow() {
    if (this.stopped || this.state === 'connected' || this.state === 'authenticating') return;
    clearTimeout(this.timer);
    this.open();
  }

  open() {
    clearTimeout(this.timer);
    if (this.ws) {
      this.ws.onclose = null;
      this.ws.close();
    }
    this.setState('connecting');
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch (err) {
      this.scheduleReconnect(new Error(`Invalid server address: ${this.url}`));
      return;
    }
    this.ws = ws;
    ws.onopen = () => this.onOpen(ws);
    ws.onmessage = (ev) => this.onMessage(ev);
    ws.onclose = (ev) => this.onClose(ws, ev);
    ws.onerror = () => {}; // onclose follows and carries the handling
  }

  async onOpen(ws) {
    if (ws !== this.ws) return;
    this.setState('authenticating');
    try {
      const auth = await this.call('authenticate', { auth_token: this.token }, { force: true });
      await this.call('subscribe_events', { topics: TOPICS }, { force: true });
      if (ws !== this.ws) return;
      this.auth = auth;
      this.attempt = 0;
      this.setState('connected');
      this.emit('ready', { auth });
    } catch (err) {
      if (ws !== this.ws) return;
      if (err instanceof RpcError && err.code === -32001) {
        this.stopped = true;
        this.ws = null;
        ws.close(1000, 'authentication failed');
        this.setState('stopped', { error: err });
        this.emit('autherror', { error: err });
      } else if (err instanceof RpcError && err.code === -32040) {
        const wait = Number(err.data?.retry_after_ms) || BACKOFF_MAX_MS;
        this.ws = null;
        ws.onclose = null;
        ws.close();
        this.scheduleReconnect(err, wait);
      } else {
        ws.close();
      }
    }
  }

  onClose(ws, ev) {
    if (ws !== this.ws) return;
    this.ws = null;
    this.auth = null;
    this.failPending(new ConnectionLost('The connection to the server was lost.'));
    if (this.stopped) return;
    const reason = ev.code === 1013 ? 'the server dropped a slow connection'
      : ev.code === 1001 ? 'the server is restarting or shutting down'
        : ev.code === 1006 ? 'the server cannot be reached'
          : `closed (code ${ev.code})`;
    this.scheduleReconnect(new Error(`Connection lost: ${reason}.`));
  }

  scheduleReconnect(error, delayOverride) {
    if (this.stopped) return;
    this.attempt += 1;
    const delayMs = delayOverride ?? backoffDelay(this.attempt);
    const retryAt = Date.now() + delayMs;
    this.setState('reconnecting', { delayMs, retryAt, error });
    this.timer = setTimeout(() => this.open(), delayMs);
  }

  failPending(error) {
    for (const { reject, timer } of this.pending.values()) {
      clearTimeout(timer);
      reject(error);
    }
    this.pending.clear();
  }

  onMessage(ev) {
    let message;
    try {
      message = JSON.parse(ev.data);
    } catch {
      return;
    }
    for (const item of Array.isArray(message) ? message : [message]) {
      if (item && typeof item.method === 'string' && !('id' in item)) {
        this.emit('notification', { method: item.method, params: item.params || {} });
        continue;
      }
      const entry = this.pending.get(item?.id);
      if (!entry) continue;
      this.pending.delete(item.id);
      clearTimeout(entry.timer);
      if (item.error) {
        const { code, message: text, data } = item.error;
        if (code === -32001 && !entry.isAuth) this.emit('autherror', { error: new RpcError(code, text, data) });
        entry.reject(new RpcError(code, text, data));
      } else {
        entry.resolve(item.result);
      }
    }
  }

  /** One call; resolves with the result or rejects with RpcError / ConnectionLost. */
  call(method, params, { timeout = DEFAULT_TIMEOUT_MS, force = false } = {}) {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN || (!force && this.state !== 'connected')) {
      return Promise.reject(new ConnectionLost());
    }
    const id = this.nextId++;
    const message = { jsonrpc: '2.0', method, id };
    if (params !== undefined) message.params = params;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`The server did not answer ${method} in ${Math.round(timeout / 1000)} s.`));
      }, timeout);
      this.pending.set(id, { resolve, reject, timer, isAuth: method === 'authenticate' });
      ws.send(JSON.stringify(message));
    });
  }

  /** A JSON-RPC batch: resolves with [{result} | {error: RpcError}] in request order. */
  batch(calls, { timeout = DEFAULT_TIMEOUT_MS } = {}) {
    if (calls.length === 0) return Promise.resolve([]);
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN || this.state !== 'connected') {
      return Promise.reject(new ConnectionLost());
    }
    const promises = [];
    const messages = calls.map(([method, params]) => {
      const id = this.nextId++;
      promises.push(new Promise((resolve) => {
        const timer = setTimeout(() => {
          this.pending.delete(id);
          resolve({ error: new Error(`The server did not answer ${method}.`) });
        }, timeout);
        this.pending.set(id, {
          resolve: (result) => resolve({ result }),
          reject: (error) => resolve({ error }),
          timer,
        });
      }));
      const msg = { jsonrpc: '2.0', method, id };
      if (params !== undefined) msg.params = params;
      return msg;
    });
    ws.send(JSON.stringify(messages));
    return Promise.all(promises);
  }
}

// Image & capture panel of a camera card: V4L2 controls (sliders, switches, menus) and the
// capture settings (pixel format, resolution, frame rate). Operators edit; viewers read.

import { clear, describeError, h, notify, notifyError } from './ui.js';

const FLAG_NOTE = {
  inactive: 'set automatically (switch the automatic mode off to change it)',
  read_only: 'read-only',
  grabbed: 'locked while the camera captures',
};

export class TuningPanel {
  constructor(card) {
    this.card = card;
    this.app = card.app;
    this.loaded = false;
    this.controls = new Map(); // name → {control, input, output, row}
    this.body = h('div', { class: 'tuning-body' }, 'Loading…');
    this.details = h('details', { class: 'tuning' }, h('summary', {}, 'Image & capture'), this.body);
    this.details.addEventListener('toggle', () => this.details.open && this.load());
  }

  get device() {
    return this.card.camera.device;
  }

  get canEdit() {
    return this.app.atLeast('operator') && this.app.connected;
  }

  /** Camera object changed (status, resolution…): reload when open and it matters. */
  onCameraChanged(old, camera) {
    if (old.status !== camera.status || old.resolution !== camera.resolution || old.fps !== camera.fps) {
      this.loaded = false;
      if (this.details.open) this.load();
    }
  }

  /** `camera_controls` notification: show the new values without a round trip. */
  onControls(params) {
    for (const [name, value] of Object.entries(params.controls || {})) {
      const entry = this.controls.get(name);
      if (entry) this.showValue(entry, value);
    }
  }

  async load() {
    if (this.loaded) return;
    clear(this.body, 'Loading…');
    let settings;
    try {
      settings = await this.app.call('get_camera_settings', { device: this.device });
    } catch (err) {
      if (err.code === -32030) {
        this.loaded = true;
        clear(this.body, h('p', { class: 'muted' }, 'This camera has no adjustable image controls or capture modes (not a USB/V4L2 camera).'));
        return;
      }
      clear(this.body, h('p', { class: 'error' }, describeError(err, 'Loading the capture settings')));
      return;
    }
    this.loaded = true;
    const settingsBox = this.renderSettings(settings);
    const controlsBox = h('div', { class: 'controls-box' }, 'Loading controls…');
    const note = this.app.atLeast('operator') ? null
      : h('p', { class: 'muted small' }, 'Viewer role: read-only. Changing controls needs an operator.');
    clear(this.body, note, settingsBox, controlsBox);
    await this.loadControls(controlsBox);
  }

  // --- capture settings -------------------------------------------------------------------

  renderSettings(settings) {
    const id = `set-${this.device}`;
    const modes = settings.modes || {};
    const formats = ['auto', ...Object.keys(modes)];
    const disabled = !this.canEdit;
    const fmt = h('select', { id: `${id}-fmt`, name: 'pixel_format', disabled },
      formats.map((f) => h('option', { value: f, selected: f === settings.pixel_format }, f === 'auto' ? 'auto (H264, then MJPG)' : f)));
    const res = h('select', { id: `${id}-res`, name: 'resolution', disabled });
    const fps = h('select', { id: `${id}-fps`, name: 'fps', disabled });
    const sizesOf = (f) => {
      const pool = f === 'auto' ? Object.values(modes) : [modes[f] || {}];
      const sizes = new Map();
      for (const m of pool) for (const [size, rates] of Object.entries(m)) {
        sizes.set(size, [...new Set([...(sizes.get(size) || []), ...rates])].sort((a, b) => b - a));
      }
      return sizes;
    };
    const fill = (keepRes, keepFps) => {
      const sizes = sizesOf(fmt.value);
      const wantRes = sizes.has(keepRes) ? keepRes : [...sizes.keys()][0];
      clear(res, [...sizes.keys()].map((s) => h('option', { value: s, selected: s === wantRes }, s)));
      const rates = sizes.get(res.value) || [];
      const wantFps = rates.includes(keepFps) ? keepFps : rates[0];
      clear(fps, rates.map((r) => h('option', { value: String(r), selected: r === wantFps }, `${r} fps`)));
    };
    fill(settings.resolution, settings.fps);
    fmt.addEventListener('change', () => fill(res.value, Number(fps.value)));
    res.addEventListener('change', () => fill(res.value, Number(fps.value)));

    const status = h('p', { class: 'muted small', role: 'status' },
      `In use: ${settings.active_pixel_format || 'driver default'} ${settings.resolution} at ${settings.fps} fps, `
      + `${settings.encoder === 'copy' ? 'recorded and streamed without re-encoding' : `encoded with ${settings.encoder}`}.`);
    const why = settings.selection ? h('p', { class: 'muted small' }, settings.selection) : null;
    const form = h('form', { class: 'settings-form', 'aria-label': `Capture settings of ${this.card.camera.name || this.device}` },
      h('div', { class: 'field' }, h('label', { for: fmt.id }, 'Pixel format'), fmt),
      h('div', { class: 'field' }, h('label', { for: res.id }, 'Resolution'), res),
      h('div', { class: 'field' }, h('label', { for: fps.id }, 'Frame rate'), fps));
    if (this.app.atLeast('operator')) {
      const apply = h('button', { type: 'submit', class: 'btn btn-small', disabled }, 'Apply settings');
      form.append(apply);
      form.addEventListener('submit', async (event) => {
        event.preventDefault();
        apply.disabled = true;
        try {
          const stored = await this.app.call('set_camera_settings', {
            device: this.device, pixel_format: fmt.value, resolution: res.value, fps: Number(fps.value),
          });
          notify(`Capture settings of ${this.card.camera.name || this.device}: ${stored.active_pixel_format || stored.pixel_format} ${stored.resolution} at ${stored.fps} fps.`);
          this.loaded = false;
          await this.load();
        } catch (err) {
          notifyError(err, 'Changing the capture settings');
        } finally {
          apply.disabled = !this.canEdit;
        }
      });
    }
    return h('section', { class: 'tuning-section' }, h('h3', {}, 'Capture'), form, status, why);
  }

  // --- controls ---------------------------------------------------------------------------

  async loadControls(box) {
    let listed;
    try {
      listed = await this.app.call('get_camera_controls', { device: this.device });
    } catch (err) {
      clear(box, h('p', { class: 'error' }, describeError(err, 'Loading the controls')));
      return;
    }
    this.controls.clear();
    const rows = (listed.controls || []).map((control) => this.renderControl(control));
    const reset = this.app.atLeast('operator')
      ? h('button', { type: 'button', class: 'btn btn-small', disabled: !this.canEdit, onclick: () => this.reset(box) }, 'Reset to defaults')
      : null;
    this.status = h('p', { class: 'muted small', role: 'status', 'aria-live': 'polite' });
    clear(box, h('section', { class: 'tuning-section' }, h('h3', {}, 'Image controls'),
      rows.length ? h('div', { class: 'control-list' }, rows) : h('p', { class: 'muted' }, 'The camera reports no controls.'),
      reset, this.status));
  }

  renderControl(control) {
    const id = `ctl-${this.device}-${control.name}`;
    const flags = control.flags || [];
    const locked = flags.includes('read_only') || flags.includes('inactive') || flags.includes('grabbed');
    const disabled = !this.canEdit || locked;
    const label = h('label', { for: id }, control.label || control.name);
    const output = h('output', { for: id, class: 'control-value' });
    let input;
    if (control.type === 'boolean') {
      input = h('input', { id, type: 'checkbox', role: 'switch', checked: Boolean(control.value), disabled });
    } else if (control.type === 'menu' || control.type === 'integer_menu') {
      input = h('select', { id, disabled },
        (control.menu || []).map((item) => h('option', { value: String(item.value), selected: item.value === control.value }, String(item.label))));
    } else if (control.type === 'button') {
      input = h('button', { id, type: 'button', class: 'btn btn-small', disabled }, control.label || control.name);
    } else if (control.type === 'integer' || control.type === 'integer64') {
      input = h('input', {
        id, type: 'range', min: String(control.min), max: String(control.max), step: String(control.step || 1),
        value: String(control.value ?? control.default), disabled,
      });
      input.addEventListener('input', () => { output.textContent = input.value; });
    } else {
      input = h('span', { id }, control.value === null ? '–' : String(control.value));
    }
    const notes = flags.map((f) => FLAG_NOTE[f]).filter(Boolean);
    const row = h('div', { class: 'control-row', dataset: { control: control.name } },
      label, input, output, notes.length ? h('span', { class: 'muted small' }, ` (${notes.join(', ')})`) : null);
    const entry = { control, input, output, row };
    this.controls.set(control.name, entry);
    this.showValue(entry, control.value);
    const event = control.type === 'button' ? 'click' : 'change';
    if (!disabled) input.addEventListener(event, () => this.write(entry));
    return row;
  }

  showValue(entry, value) {
    const { control, input, output } = entry;
    if (value === null || value === undefined) return;
    if (control.type === 'boolean') input.checked = Boolean(value);
    else if (control.type === 'menu' || control.type === 'integer_menu') input.value = String(value);
    else if (input.tagName === 'INPUT') input.value = String(value);
    if (control.type === 'integer' || control.type === 'integer64') output.textContent = String(value);
  }

  valueOf(entry) {
    const { control, input } = entry;
    if (control.type === 'boolean') return input.checked;
    if (control.type === 'button') return 1;
    return Number(input.value);
  }

  async write(entry) {
    const name = entry.control.name;
    const value = this.valueOf(entry);
    try {
      const result = await this.app.call('set_camera_controls', { device: this.device, controls: { [name]: value } });
      if (name in (result.rejected || {})) {
        this.status.textContent = `${entry.control.label || name}: ${result.rejected[name]}.`;
        notify(`${entry.control.label || name} not changed: ${result.rejected[name]}.`, 'warning');
      } else {
        this.status.textContent = `${entry.control.label || name} set to ${result.applied[name]}.`;
      }
      // Flags depend on other controls (an automatic mode makes its manual value inactive).
      await this.loadControls(this.body.querySelector('.controls-box'));
      this.status.textContent = name in (result.rejected || {})
        ? `${entry.control.label || name}: ${result.rejected[name]}.`
        : `${entry.control.label || name} set to ${result.applied[name]}.`;
    } catch (err) {
      notifyError(err, `Setting ${entry.control.label || name}`);
    }
  }

  async reset(box) {
    try {
      await this.app.call('reset_camera_controls', { device: this.device });
      await this.loadControls(box);
      this.status.textContent = 'Controls reset to the camera defaults.';
    } catch (err) {
      notifyError(err, 'Resetting the controls');
    }
  }
}

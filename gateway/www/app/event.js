// event.js — one event: the seat map, holds, best available, the booking's
// countdown, payment.
//
// Seat states come from GET /api/events/{id}/seatmap and then from the live
// stream (GET /api/events/{id}/live): a `snapshot` or `reset` event makes
// the page fetch the map again (with If-None-Match, so an unchanged map is
// a 304), and `seats` events carry changes, applied only when newer than
// the map (their version is above the map's).  Changes that arrive while a
// map is loading wait in a queue and are applied after it.  Without the
// stream (a gateway that does not have it) the page polls the map every
// POLL_MS; without the map route it draws the layout from /availability
// and says that seat states are not shown.
//
// The booking the buyer is filling is remembered per event in
// sessionStorage, so a reload or the trip to the payment page keeps it.

import { api, ApiError, session, money } from './api.js';
import { SeatMap, decodeNibbles, STATE, MINE_COLOR } from './seatmap.js';
import { el, notice, showError, when, requireLogin } from './ui.js';

const POLL_MS = 2000;
const QUANTITY_MAX = 16; // seats a booking may hold (schemas/openapi.yaml)
const DRAG_PX = 4;       // a press that moves less is a click
const PAN_STEP_PX = 60;

export async function openEvent(view, eventId) {
  const ev = await api(`/api/events/${eventId}`, { auth: false });
  const page = new EventPage(view, ev);
  window.tixgrid = page; // for people debugging in the console, and the browser tests
  await page.start();
  return () => page.stop();
}

// The seat map's layout when the gateway has no /seatmap: sections and
// rows in seat order from /availability (rows carry their counts).
function layoutFromAvailability(ev, avail) {
  let first = 0;
  const sections = ev.sections.map((s) => {
    const out = { ...s, first_seat: first, rows: [] };
    first += s.seat_count;
    return out;
  });
  let seat = 0;
  for (const r of avail.rows) {
    const n = Object.values(r.counts).reduce((a, b) => a + b, 0);
    sections[r.section].rows.push({ name: r.name, first_seat: seat, seat_count: n });
    seat += n;
  }
  return { event_id: ev.id, version: avail.version, seat_count: ev.seat_count, sections, partitions: ev.partitions };
}

class EventPage {
  constructor(view, ev) {
    this.ev = ev;
    this.view = view;
    this.storageKey = `tixgrid.booking.${ev.id}`;
    this.version = -1;
    this.queue = [];
    this.timers = [];
    this.build();
  }

  build() {
    const ev = this.ev;
    this.canvas = el('canvas', { id: 'seatmap', tabindex: '0', role: 'img',
      'aria-label': `Seat map of ${ev.seat_count} seats. Click a seat to hold it; + and - zoom, arrows pan, 0 fits.` });
    this.tip = el('div', { class: 'tip', hidden: true });
    this.seatInfo = el('p', { id: 'seat-info', class: 'muted' }, 'Point at a seat to see it.');
    this.liveStatus = el('span', { id: 'live-status', class: 'muted' }, 'connecting…');
    this.legend = el('ul', { class: 'legend' });
    const zoom = (f) => () => { const r = this.canvas.getBoundingClientRect(); this.map && this.map.zoom(f, r.width / 2, r.height / 2); };
    const tools = el('div', { class: 'tools' },
      el('button', { type: 'button', onclick: zoom(1.5), 'aria-label': 'Zoom in' }, '+'),
      el('button', { type: 'button', onclick: zoom(1 / 1.5), 'aria-label': 'Zoom out' }, '−'),
      el('button', { type: 'button', onclick: () => this.map && this.map.fit() }, 'Fit'),
      this.liveStatus);
    this.panel = el('section', { id: 'basket', 'aria-live': 'polite', 'aria-labelledby': 'basket-h' });
    this.view.replaceChildren(
      el('h1', {}, ev.title),
      el('p', { class: 'muted' }, `${ev.artist} · ${ev.venue} · ${when(ev.starts_at)} · ${ev.seat_count.toLocaleString()} seats`),
      el('div', { class: 'event-grid' },
        el('div', { class: 'map-area' }, tools, el('div', { class: 'map-wrap' }, this.canvas, this.tip), this.seatInfo, this.legend),
        el('aside', { class: 'panel' }, this.bestForm(), this.panel)));
    this.renderLegend(null);
    this.renderPanel();
  }

  bestForm() {
    const options = [el('option', { value: '' }, 'Any section')].concat(
      this.ev.sections.map((s) => el('option', { value: s.name }, `${s.name} (${money(s.price, s.currency)})`)));
    const form = el('form', { id: 'best', 'aria-labelledby': 'best-h' },
      el('h2', { id: 'best-h' }, 'Best available'),
      el('p', {}, el('label', { for: 'quantity' }, 'Seats'),
        el('input', { id: 'quantity', type: 'number', min: 1, max: QUANTITY_MAX, value: 2, required: true })),
      el('p', {}, el('label', { for: 'section' }, 'Section'), el('select', { id: 'section' }, options)),
      el('button', { type: 'submit' }, 'Find seats'));
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      const quantity = Number(form.quantity.value);
      if (!Number.isInteger(quantity) || quantity < 1 || quantity > QUANTITY_MAX) {
        notice(`Seats: a whole number from 1 to ${QUANTITY_MAX}.`);
        return;
      }
      this.best(quantity, form.section.value).catch(showError);
    });
    return form;
  }

  async start() {
    await this.loadMap();
    if (!this.layoutOnly) {
      // The free counts now; the stream (or the poll) keeps them current.
      api(`/api/events/${this.ev.id}/availability`, { auth: false }).then((a) => this.renderLegend(a), () => {});
    }
    this.wireCanvas();
    this.connectLive();
    await this.restoreBooking();
    this.timers.push(setInterval(() => this.tick(), 1000));
  }

  stop() {
    this.stopped = true;
    if (this.es) this.es.close();
    this.timers.forEach((t) => clearInterval(t));
    if (this.onResize) window.removeEventListener('resize', this.onResize);
    clearTimeout(this.retry);
    if (window.tixgrid === this) window.tixgrid = null;
  }

  // ---- The map and its states ------------------------------------------------

  async loadMap() {
    const headers = this.etag ? { 'If-None-Match': this.etag } : {};
    const res = await api(`/api/events/${this.ev.id}/seatmap`, { raw: true, auth: false, headers });
    if (res.status === 304) return;
    if (!res.ok) {
      // 503 while a partition has no snapshot yet, or a gateway without the
      // route: the layout now, the states as soon as the map can be had.
      // A map drawn from the layout keeps its notice (seat states not
      // shown): it says more than "retrying" would.
      if (!this.map) await this.loadLayoutOnly();
      else if (!this.layoutOnly) notice(`The seat map could not be read now (HTTP ${res.status}); retrying.`, 'warn');
      clearTimeout(this.retry);
      if (!this.stopped) this.retry = setTimeout(() => this.reload(), POLL_MS);
      return;
    }
    const m = await res.json();
    this.etag = res.headers.get('ETag');
    const states = decodeNibbles(m.states, m.seat_count);
    if (!this.map || this.layoutOnly) {
      this.map = new SeatMap(this.canvas, m, states);
      this.renderLegend(this.avail); // now with the sections' colours
    } else {
      this.map.replaceStates(states);
    }
    if (this.layoutOnly) notice('');
    this.layoutOnly = false;
    this.version = m.version;
    this.flushQueue();
    if (this.booking) this.map.setMine(this.booking.seats.map((s) => s.seat_no));
  }

  async loadLayoutOnly() {
    const avail = await api(`/api/events/${this.ev.id}/availability`, { auth: false });
    const m = layoutFromAvailability(this.ev, avail);
    this.layoutOnly = true;
    this.map = new SeatMap(this.canvas, m, new Uint8Array(m.seat_count).fill(STATE.FREE));
    this.renderLegend(avail);
    notice('Seat states are not shown yet (the seat map cannot be read now). Section counts are current; a taken seat is refused when you pick it.', 'warn');
  }

  flushQueue() {
    const queued = this.queue;
    this.queue = [];
    for (const d of queued) this.onSeats(d);
  }

  async reload() {
    if (this.loading) {
      this.reloadAgain = true;
      return;
    }
    this.loading = true;
    try {
      do {
        this.reloadAgain = false;
        await this.loadMap();
      } while (this.reloadAgain && !this.stopped);
    } catch (e) {
      showError(e);
    } finally {
      this.loading = false;
      this.flushQueue();
    }
  }

  onSeats(d) {
    if (!this.map || this.loading) {
      this.queue.push(d);
      return;
    }
    if (d.version <= this.version) return;
    this.map.applyChanges(d.changes);
    this.version = d.version;
  }

  connectLive() {
    if (!window.EventSource) return this.startPolling();
    const es = new EventSource(`/api/events/${this.ev.id}/live`);
    this.es = es;
    es.addEventListener('snapshot', () => this.reload());
    es.addEventListener('reset', () => this.reload());
    es.addEventListener('seats', (e) => this.onSeats(JSON.parse(e.data)));
    es.addEventListener('availability', (e) => this.renderLegend(JSON.parse(e.data)));
    es.onopen = () => { this.liveStatus.textContent = 'live'; };
    es.onerror = () => {
      if (es.readyState !== EventSource.CLOSED) {
        this.liveStatus.textContent = 'reconnecting…';
        return;
      }
      // Refused outright (no such route, or not a stream): poll instead.
      this.es = null;
      this.startPolling();
    };
  }

  startPolling() {
    if (this.polling || this.stopped) return;
    this.polling = true;
    this.liveStatus.textContent = `updated every ${POLL_MS / 1000} s`;
    this.timers.push(setInterval(() => this.poll().catch(() => {}), POLL_MS));
  }

  async poll() {
    if (!this.layoutOnly) await this.reload();
    this.renderLegend(await api(`/api/events/${this.ev.id}/availability`, { auth: false }));
  }

  // avail: the last /availability (or the stream's), kept for redraws.
  renderLegend(avail) {
    this.avail = avail;
    const counts = avail ? avail.sections : null;
    const colors = this.map ? this.map.plan.sections.map((s) => s.color) : [];
    const items = this.ev.sections.map((s, i) => el('li', {},
      el('span', { class: 'swatch', style: `background:${colors[i] || '#ccc'}` }),
      `${s.name} · ${money(s.price, s.currency)}`,
      counts ? el('span', { class: 'muted', 'data-section-free': i }, ` · ${counts[i].counts.FREE.toLocaleString()} free`) : null));
    const states = [[MINE_COLOR, 'yours'], ['#ff7f0e', 'held'], ['#c2185b', 'paying'], ['#555555', 'sold'], ['#222222', 'blocked'], ['#cfcfcf', 'unknown']];
    for (const [c, name] of states) items.push(el('li', {}, el('span', { class: 'swatch', style: `background:${c}` }), name));
    this.legend.replaceChildren(...items);
  }

  // ---- Pointer and keyboard ------------------------------------------------------

  wireCanvas() {
    const c = this.canvas;
    let press = null;
    const at = (e) => { const r = c.getBoundingClientRect(); return [e.clientX - r.left, e.clientY - r.top]; };
    c.addEventListener('pointerdown', (e) => { press = { x: e.clientX, y: e.clientY, drag: false }; c.setPointerCapture(e.pointerId); });
    c.addEventListener('pointermove', (e) => {
      if (press && (press.drag || Math.hypot(e.clientX - press.x, e.clientY - press.y) > DRAG_PX)) {
        this.map.pan(e.clientX - press.x, e.clientY - press.y);
        press = { x: e.clientX, y: e.clientY, drag: true };
        return;
      }
      this.hover(...at(e));
    });
    c.addEventListener('pointerup', (e) => {
      const click = press && !press.drag;
      press = null;
      if (click) this.clickSeat(this.map.seatAt(...at(e))).catch(showError);
    });
    c.addEventListener('pointerleave', () => { this.tip.hidden = true; });
    c.addEventListener('wheel', (e) => {
      e.preventDefault();
      this.map.zoom(Math.exp(-e.deltaY * 0.0015), ...at(e));
    }, { passive: false });
    c.addEventListener('keydown', (e) => this.onKey(e));
    this.onResize = () => this.map && this.map.draw();
    window.addEventListener('resize', this.onResize);
  }

  onKey(e) {
    const r = this.canvas.getBoundingClientRect();
    const moves = { ArrowLeft: [PAN_STEP_PX, 0], ArrowRight: [-PAN_STEP_PX, 0], ArrowUp: [0, PAN_STEP_PX], ArrowDown: [0, -PAN_STEP_PX] };
    if (e.key === '+' || e.key === '=') this.map.zoom(1.5, r.width / 2, r.height / 2);
    else if (e.key === '-') this.map.zoom(1 / 1.5, r.width / 2, r.height / 2);
    else if (e.key === '0') this.map.fit();
    else if (moves[e.key]) this.map.pan(...moves[e.key]);
    else return;
    e.preventDefault();
  }

  hover(x, y) {
    const k = this.map.seatAt(x, y);
    if (k < 0) {
      this.tip.hidden = true;
      return;
    }
    const d = this.map.describe(k);
    const text = `${d.section} · row ${d.row} · seat ${d.number} · ${money(d.price, d.currency)} · ${this.layoutOnly && d.state === 'FREE' ? 'state not shown' : d.state}`;
    this.tip.textContent = text;
    this.tip.style.left = `${x + 14}px`;
    this.tip.style.top = `${y + 14}px`;
    this.tip.hidden = false;
    this.seatInfo.textContent = text;
  }

  async clickSeat(k) {
    if (k < 0) return;
    if (!requireLogin()) return;
    notice('');
    if (this.map.mine.has(k)) return this.release(k);
    if (!this.layoutOnly && this.map.states[k] !== STATE.FREE) {
      notice(`That seat is ${this.map.describe(k).state.toLowerCase()}; pick a free one.`, 'warn');
      return;
    }
    await this.withBooking(this.map.describe(k).section,
      (b) => api('/api/seats/select', { method: 'PATCH', body: { booking_id: b.id, seat_id: this.map.describe(k).id } }));
  }

  // ---- The booking -------------------------------------------------------------

  async restoreBooking() {
    const id = sessionStorage.getItem(this.storageKey);
    if (!id || !session.token) return;
    try {
      const b = await api(`/api/bookings/${id}`);
      if (b.status === 'created' || b.status === 'pending_payment') return this.setBooking(b);
    } catch (e) {
      if (!(e instanceof ApiError) || e.status !== 404) throw e;
    }
    this.setBooking(null);
  }

  setBooking(b) {
    this.booking = b;
    if (b) sessionStorage.setItem(this.storageKey, String(b.id));
    else sessionStorage.removeItem(this.storageKey);
    if (this.map) this.map.setMine(b ? b.seats.map((s) => s.seat_no) : []);
    this.tip.hidden = true; // it may name a seat whose state just changed
    this.renderPanel();
  }

  async refreshBooking() {
    if (!this.booking) return;
    const b = await api(`/api/bookings/${this.booking.id}`);
    this.setBooking(b.status === 'created' || b.status === 'pending_payment' ? b : null);
    if (b.status === 'expired') notice('Your hold expired and its seats were released.', 'warn');
  }

  // Runs op(booking) on a booking in `created` state, making one when
  // there is none; one that ended meanwhile is replaced once.
  async withBooking(section, op) {
    for (let attempt = 0; attempt < 2; attempt++) {
      if (!this.booking || this.booking.status !== 'created') {
        const body = { event_id: this.ev.id };
        if (this.ev.partitions.length > 1 && section) body.section = section;
        this.setBooking(await api('/api/bookings', { method: 'POST', body }));
      }
      try {
        const r = await op(this.booking);
        await this.refreshBooking();
        return r;
      } catch (e) {
        const ended = e instanceof ApiError && (e.code === 'booking_expired' || e.code === 'booking_state' || (e.status === 404 && e.code === 'not_found'));
        if (!ended || attempt === 1) throw e;
        this.setBooking(null);
      }
    }
    return null;
  }

  async best(quantity, section) {
    if (!requireLogin()) return;
    notice('');
    const body = (b) => {
      const x = { booking_id: b.id, quantity, adjacent: true };
      if (section) x.section = section;
      return x;
    };
    await this.withBooking(section, (b) => api('/api/seats/select', { method: 'PATCH', body: body(b) }));
  }

  async release(k) {
    const id = this.map.describe(k).id;
    await api('/api/seats/release', { method: 'PATCH', body: { booking_id: this.booking.id, seat_ids: [id] } });
    await this.refreshBooking();
  }

  async cancel() {
    await api('/api/bookings/cancel', { method: 'PATCH', body: { booking_id: this.booking.id } });
    this.setBooking(null);
    notice('Booking cancelled; its seats are free again.', 'info');
  }

  async pay() {
    const r = await api('/api/bookings/initiatePayment', { method: 'PATCH', body: { booking_id: this.booking.id } });
    location.assign(r.payment_url);
  }

  async resumePayment() {
    const r = await api(`/api/bookings/${this.booking.id}/payment-status`);
    if (r.payment_url) location.assign(r.payment_url);
    else notice(`The payment is ${r.status}.`, 'info');
  }

  renderPanel() {
    const b = this.booking;
    const head = el('h2', { id: 'basket-h' }, 'Your seats');
    if (!b || b.seats.length === 0) {
      this.panel.replaceChildren(head, el('p', { class: 'muted' },
        session.token ? 'Click a free seat, or ask for the best available.' : 'Log in to pick seats.'));
      return;
    }
    const items = b.seats.map((s) => el('li', { 'data-seat': s.seat_no },
      el('button', { type: 'button', class: 'link', title: 'Show it on the map', onclick: () => this.map && this.map.focus(s.seat_no) },
        `${s.section} · row ${s.row} · seat ${s.number}`),
      ` · ${money(s.price, s.currency)} `,
      b.status === 'created' ? el('button', { type: 'button', class: 'link', 'aria-label': `Release ${s.section} row ${s.row} seat ${s.number}`,
        onclick: () => this.release(s.seat_no).catch(showError) }, 'Release') : null));
    const pending = b.status === 'pending_payment';
    this.countdown = el('p', { id: 'countdown', class: 'countdown' });
    this.panel.replaceChildren(head, this.countdown, el('ul', { id: 'held' }, items),
      el('p', { class: 'total' }, `Total ${money(b.total.amount, b.total.currency)}`),
      pending
        ? el('button', { type: 'button', id: 'pay', onclick: () => this.resumePayment().catch(showError) }, 'Continue payment')
        : el('button', { type: 'button', id: 'pay', onclick: () => this.pay().catch(showError) }, 'Pay'),
      pending ? null : el('button', { type: 'button', id: 'cancel', class: 'secondary', onclick: () => this.cancel().catch(showError) }, 'Cancel booking'));
    this.tick();
  }

  tick() {
    if (!this.booking || !this.countdown) return;
    const left = Math.max(0, Math.floor((Date.parse(this.booking.expires_at) - Date.now()) / 1000));
    const what = this.booking.status === 'pending_payment' ? 'Payment window' : 'Held for';
    this.countdown.textContent = `${what} ${Math.floor(left / 60)}:${String(left % 60).padStart(2, '0')}`;
    this.countdown.dataset.seconds = String(left);
    if (left === 0 && !this.expiring) {
      this.expiring = true;
      this.refreshBooking().catch(showError).finally(() => { this.expiring = false; });
    }
  }
}

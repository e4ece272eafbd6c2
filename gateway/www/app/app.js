// app.js — the shopper page: events, the seat map, holds, payment, bookings.
//
// A single page with hash routes (#/, #/event/ID, #/login, #/bookings,
// #/payment/ID/success|fail), so the gateway serves it as plain files and
// the payment provider's return (/api/payments/success, which sends a
// browser here) needs no server-side rendering.  Views are built with
// DOM calls, never innerHTML from data, so no event title can inject markup.

import { api, session, login, register, money } from './api.js';
import { openEvent } from './event.js';
import { el, notice, showError, when, requireLogin, updateWho } from './ui.js';

const view = document.getElementById('view');
let leave = null; // the current view's cleanup (timers, streams)

// ---- Events ---------------------------------------------------------------

async function eventsView(params) {
  const q = params.get('q') || '';
  const input = el('input', { type: 'search', id: 'q', name: 'q', value: q, placeholder: 'title, artist or venue' });
  const form = el('form', { class: 'search', role: 'search' },
    el('label', { for: 'q' }, 'Search events'), input, el('button', { type: 'submit' }, 'Search'));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    location.hash = input.value.trim() ? `#/?q=${encodeURIComponent(input.value.trim())}` : '#/';
  });
  const list = el('ul', { class: 'events', 'aria-live': 'polite' });
  view.replaceChildren(el('h1', {}, q ? `Events matching “${q}”` : 'Events on sale'), form, list);
  const path = q ? `/api/events/search?q=${encodeURIComponent(q)}&pageSize=100` : '/api/events?pageSize=100';
  const page = await api(path, { auth: false });
  if (page.items.length === 0) list.append(el('li', {}, 'No events found.'));
  for (const e of page.items) {
    list.append(el('li', { class: 'event' },
      el('a', { href: `#/event/${e.id}`, class: 'title' }, e.title),
      el('div', {}, `${e.artist} · ${e.venue}`),
      el('div', { class: 'muted' }, `${when(e.starts_at)} · ${money(e.price_min, e.currency)} – ${money(e.price_max, e.currency)} · ${e.status.replace('_', ' ')}`)));
  }
}

// ---- Login and registration -------------------------------------------------

function field(id, label, type, attrs = {}) {
  return el('p', {}, el('label', { for: id }, label), el('input', { id, name: id, type, required: true, ...attrs }));
}

function loginView(params) {
  const next = params.get('next') || '#/';
  const loginForm = el('form', { class: 'card', 'aria-labelledby': 'login-h' },
    el('h2', { id: 'login-h' }, 'Log in'),
    field('login-email', 'Email', 'email', { autocomplete: 'username' }),
    field('login-password', 'Password', 'password', { autocomplete: 'current-password' }),
    el('button', { type: 'submit' }, 'Log in'));
  const regForm = el('form', { class: 'card', 'aria-labelledby': 'reg-h' },
    el('h2', { id: 'reg-h' }, 'Create an account'),
    field('reg-email', 'Email', 'email', { autocomplete: 'username' }),
    field('reg-password', 'Password', 'password', { autocomplete: 'new-password', minlength: 8 }),
    el('p', {}, el('label', { for: 'reg-name' }, 'Name (optional)'), el('input', { id: 'reg-name', type: 'text' })),
    el('button', { type: 'submit' }, 'Create account'));
  const done = () => { updateWho(); notice(''); location.hash = next; };
  loginForm.addEventListener('submit', (e) => {
    e.preventDefault();
    login(loginForm['login-email'].value, loginForm['login-password'].value).then(done, showError);
  });
  regForm.addEventListener('submit', (e) => {
    e.preventDefault();
    const email = regForm['reg-email'].value;
    const password = regForm['reg-password'].value;
    register(email, password, regForm['reg-name'].value.trim())
      .then(() => login(email, password)).then(done, showError);
  });
  view.replaceChildren(el('h1', {}, 'Your account'), el('div', { class: 'two' }, loginForm, regForm));
  loginForm['login-email'].focus();
}

// ---- My bookings ------------------------------------------------------------

// The history comes from PostgreSQL, written behind the grid (typically
// within 100 ms): a booking made or paid a moment ago may be missing or
// behind at first, so the list refreshes itself while it is shown.
const BOOKINGS_REFRESH_MS = 2000;

async function bookingsView() {
  if (!requireLogin()) return null;
  view.replaceChildren(el('h1', {}, 'My bookings'), el('p', {}, 'Loading…'));
  await renderBookings();
  const timer = setInterval(() => renderBookings().catch(showError), BOOKINGS_REFRESH_MS);
  return () => clearInterval(timer);
}

// Event titles by id, read once per page load (events change rarely).
const titles = new Map();
async function eventTitles(ids) {
  await Promise.all([...new Set(ids)].filter((id) => !titles.has(id)).map((id) =>
    api(`/api/events/${id}`, { auth: false }).then((e) => titles.set(id, e.title), () => titles.set(id, `event ${id}`))));
}

async function renderBookings() {
  const page = await api('/api/bookings?pageSize=100');
  await eventTitles(page.items.map((b) => b.event_id));
  if (!location.hash.startsWith('#/bookings')) return;
  const rows = page.items.map((b) => el('tr', { 'data-booking': b.id, 'data-status': b.status },
    el('td', {}, String(b.id)),
    el('td', {}, el('a', { href: `#/event/${b.event_id}` }, titles.get(b.event_id))),
    el('td', { class: 'status' }, b.status.replace('_', ' ')),
    el('td', {}, b.seats.map((s) => (s.section ? `${s.section} row ${s.row} seat ${s.number}` : `seat ${s.seat_no}`)).join(', ') || '—'),
    el('td', {}, money(b.total.amount, b.total.currency)),
    el('td', {}, when(b.created_at))));
  const table = el('table', { class: 'bookings' },
    el('caption', {}, `${page.total} booking(s), newest first`),
    el('thead', {}, el('tr', {}, ['Booking', 'Event', 'Status', 'Seats', 'Total', 'Made'].map((t) => el('th', { scope: 'col' }, t)))),
    el('tbody', {}, rows));
  view.replaceChildren(el('h1', {}, 'My bookings'), page.items.length ? table : el('p', {}, 'No bookings yet.'));
}

// ---- Back from the payment page ----------------------------------------------

const RETURN_POLLS_MAX = 40; // 20 s: the webhook normally lands within a second
const RETURN_POLL_MS = 500;

async function paymentView(paymentId, returned) {
  const status = el('p', { id: 'payment-status', 'aria-live': 'polite' }, 'Checking the payment…');
  view.replaceChildren(el('h1', {}, returned === 'success' ? 'Payment' : 'Payment not made'), status,
    el('p', {}, el('a', { href: '#/bookings' }, 'My bookings'), ' · ', el('a', { href: '#/' }, 'Events')));
  let timer = 0;
  leave = () => clearTimeout(timer);
  for (let n = 0; n < RETURN_POLLS_MAX; n++) {
    const r = await api(`/api/payments/${returned === 'success' ? 'success' : 'fail'}?paymentId=${encodeURIComponent(paymentId)}`, { auth: false });
    status.dataset.status = r.status;
    const words = { completed: `Paid: booking ${r.booking_id} is yours.`, failed: `The payment was declined; booking ${r.booking_id} is released.`, refunded: 'The payment came too late and was refunded.', pending: 'Waiting for the payment provider…' };
    status.textContent = words[r.status] || r.status;
    // The event page forgets a booking that is no longer open when it reads it.
    if (r.status !== 'pending') return;
    await new Promise((resolve) => { timer = setTimeout(resolve, RETURN_POLL_MS); });
  }
  status.textContent = 'The provider has not confirmed yet; My bookings will show the outcome.';
}

// ---- Router -----------------------------------------------------------------

async function route() {
  if (leave) leave();
  leave = null;
  notice('');
  const [path, query] = (location.hash.slice(1) || '/').split('?');
  const params = new URLSearchParams(query || '');
  const parts = path.split('/').filter(Boolean);
  try {
    if (parts.length === 0) await eventsView(params);
    else if (parts[0] === 'event' && /^\d+$/.test(parts[1] || '')) leave = await openEvent(view, Number(parts[1]));
    else if (parts[0] === 'login') loginView(params);
    else if (parts[0] === 'bookings') leave = await bookingsView();
    else if (parts[0] === 'payment' && parts[1]) await paymentView(parts[1], parts[2]);
    else view.replaceChildren(el('h1', {}, 'Not found'), el('p', {}, el('a', { href: '#/' }, 'Back to the events')));
  } catch (e) {
    showError(e);
  }
}

document.getElementById('logout').addEventListener('click', () => {
  session.clear();
  updateWho();
  location.hash = '#/';
});
window.addEventListener('hashchange', route);
updateWho();
route();

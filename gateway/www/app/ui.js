// ui.js — small helpers every view uses: elements, the notice line, dates.

import { ApiError, session } from './api.js';

const noticeBox = document.getElementById('notice');

// el('p', {class: 'x'}, 'text', child...): an element.
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else if (k === 'class') node.className = v;
    else node.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c !== null && c !== undefined) node.append(c instanceof Node ? c : String(c));
  }
  return node;
}

export function notice(text, kind = 'error') {
  noticeBox.textContent = text;
  noticeBox.className = `notice ${kind}`;
  noticeBox.hidden = !text;
}

export function showError(e) {
  // A 401 other than a refused login means the token is no longer good.
  if (e instanceof ApiError && e.status === 401 && e.code !== 'invalid_credentials') {
    notice('Please log in again: your session has ended.');
    updateWho();
    return;
  }
  notice(e instanceof ApiError ? `${e.message} (${e.code})` : String(e.message || e));
}

export function when(iso) {
  return new Date(iso).toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
}

export function updateWho() {
  const email = session.token ? session.email : null;
  document.getElementById('who').textContent = email ? email : '';
  document.getElementById('login-link').hidden = Boolean(email);
  document.getElementById('logout').hidden = !email;
}

export function requireLogin() {
  if (session.token) return true;
  location.hash = `#/login?next=${encodeURIComponent(location.hash || '#/')}`;
  return false;
}


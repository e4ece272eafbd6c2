// buy.mjs — buys one ticket through the shopper page of a running gateway,
// as a person would, in headless Chromium: log in, open the 100,000-seat
// concert, click a free seat on the map, Pay, Approve on the sandbox's
// page, and back in the page see the booking paid and in My bookings.
// For checking `scripts/demo` by hand (the suite's run.mjs starts its own grid):
//
//   node tests/browser/buy.mjs [URL] [SEAT_NO]   (http://localhost:8080, a free seat at random)
//
// Prints each step with its time; exit 0 when the booking is paid, 1 otherwise.
// Bounded: every step 20 s, the whole run 90 s.  Screenshots go to
// $TIXGRID_BROWSER_ARTIFACTS or /tmp/tixgrid-browser.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const url = (process.argv[2] || 'http://localhost:8080').replace(/\/$/, '');
const wanted = process.argv[3] !== undefined ? Number(process.argv[3]) : -1;
const out = process.env.TIXGRID_BROWSER_ARTIFACTS || path.join(os.tmpdir(), 'tixgrid-browser');
const STEP_MS = 20000;
const RUN_MS = 90000;

setTimeout(() => { console.error('buy: not done within 90 s'); process.exit(1); }, RUN_MS).unref();
fs.mkdirSync(out, { recursive: true });
const t0 = Date.now();
const step = (what) => console.log(`${String(Date.now() - t0).padStart(6)} ms  ${what}`);

const browser = await chromium.launch({ executablePath: process.env.TIXGRID_CHROMIUM || '/usr/bin/chromium', args: ['--no-sandbox'] });
let status = 1;
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  page.setDefaultTimeout(STEP_MS);
  await page.goto(`${url}/`);
  await page.getByRole('link', { name: 'Log in' }).click();
  await page.fill('#login-email', 'buyer@demo.tixgrid');
  await page.fill('#login-password', 'demo-buyer-1');
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.waitForFunction(() => document.getElementById('who').textContent !== '');
  step('logged in as buyer@demo.tixgrid');
  await page.getByRole('link', { name: /Northern Lights Tour/ }).click();
  await page.waitForFunction(() => window.tixgrid && window.tixgrid.map && window.tixgrid.map.drawn > 0);
  step('the concert\'s seat map is drawn');
  const at = await page.evaluate((want) => {
    const t = window.tixgrid;
    // From a random seat on, the first free one: a map without seat states
    // (layout only) shows every seat free, and a random one rarely is not.
    const n = t.map.states.length;
    let k = want;
    for (let i = 0, start = Math.floor(Math.random() * n); k < 0 && i < n; i++) {
      if (t.map.states[(start + i) % n] === 0) k = (start + i) % n;
    }
    t.map.focus(k, 14);
    t.map.drawNow();
    const c = t.map.seatCenter(k);
    const r = t.map.canvas.getBoundingClientRect();
    return { k, x: r.left + c.x, y: r.top + c.y, seat: t.map.describe(k) };
  }, wanted);
  await page.mouse.click(at.x, at.y);
  await page.waitForSelector(`#held li[data-seat="${at.k}"]`);
  step(`held ${at.seat.section} row ${at.seat.row} seat ${at.seat.number}; ${await page.textContent('#countdown')}`);
  await page.screenshot({ path: path.join(out, 'buy-held.png') });
  const booking = await page.evaluate(() => window.tixgrid.booking.id);
  await page.getByRole('button', { name: 'Pay' }).click();
  await page.waitForSelector('text=Approve');
  step(`on the payment page ${page.url()}`);
  await page.getByRole('button', { name: 'Approve' }).click();
  await page.waitForSelector('#payment-status[data-status="completed"]');
  step(`back in the page: ${await page.textContent('#payment-status')}`);
  await page.getByRole('link', { name: 'My bookings' }).first().click();
  await page.waitForSelector(`tr[data-booking="${booking}"][data-status="paid"]`);
  await page.screenshot({ path: path.join(out, 'buy-paid.png') });
  step(`My bookings lists booking ${booking} as paid (screenshots in ${out})`);
  status = 0;
} catch (e) {
  console.error(`buy: ${e.message}`);
} finally {
  await browser.close();
}
process.exit(status);

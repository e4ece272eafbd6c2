// seatmap.js — every seat of an event on one canvas.
//
// A 100,000-seat map must draw in a few milliseconds and update a seat in
// microseconds, so a seat is one pixel of an ImageData (the "plan"), laid
// out once: each section is a block of its rows, the rows wrapped into as
// many side-by-side columns as fit PLAN_WIDTH, sections stacked best first.
// A change of state rewrites that seat's four bytes and marks the plan
// dirty; drawing is one drawImage of the plan (an offscreen canvas) scaled
// to the view with smoothing off, plus the section names.  Zoom and pan are
// a scale and an offset; hit-testing goes back through pixelSeat.
//
// States follow GET /api/events/{id}/seatmap: 0 FREE, 1 SELECTED,
// 2 RESERVED, 3 SOLD, 4 BLOCKED, 15 UNKNOWN.  A free seat shows its
// section's colour; the caller's own seats are drawn in MINE_COLOR.

export const STATE = { FREE: 0, SELECTED: 1, RESERVED: 2, SOLD: 3, BLOCKED: 4, UNKNOWN: 15 };
export const STATE_NAME = { 0: 'FREE', 1: 'SELECTED', 2: 'RESERVED', 3: 'SOLD', 4: 'BLOCKED', 15: 'UNKNOWN' };

const PLAN_WIDTH = 400;      // seats across the plan
const COLUMN_GAP = 4;        // empty pixels between row columns
const SECTION_GAP = 6;       // empty pixels above each section (its name)
const SCALE_MIN = 0.5;
const SCALE_MAX = 40;
const GRID_SCALE_MIN = 6;    // from this many pixels a seat, gaps show between seats
// Free seats in their section's colour; none of these is near a state's.
const SECTION_COLORS = ['#c9a227', '#4c72b0', '#8172b3', '#64b5cd', '#937860', '#8da0cb',
                        '#b3b3b3', '#a6761d'];
const STATE_COLORS = { 1: '#ff7f0e', 2: '#c2185b', 3: '#555555', 4: '#222222', 15: '#cfcfcf' };
export const MINE_COLOR = '#00c853';
const BACKGROUND = [250, 250, 250, 255];

function rgb(hex) {
  const n = parseInt(hex.slice(1), 16);
  return [n >> 16, (n >> 8) & 255, n & 255, 255];
}

// Where each seat goes on the plan: {width, height, seatPixel, pixelSeat,
// sections: [{...section, color, top, rowsOf(seat)}]}.
export function layoutPlan(sections, seatCount) {
  const seatPixel = new Int32Array(seatCount).fill(-1);
  let top = 0;
  const placed = [];
  for (const [i, s] of sections.entries()) {
    const longest = Math.max(1, ...s.rows.map((r) => r.seat_count));
    const columns = Math.max(1, Math.floor((PLAN_WIDTH + COLUMN_GAP) / (longest + COLUMN_GAP)));
    const perColumn = Math.ceil(s.rows.length / columns);
    top += SECTION_GAP;
    s.rows.forEach((row, r) => {
      const x0 = Math.floor(r / perColumn) * (longest + COLUMN_GAP);
      const y = top + (r % perColumn);
      for (let k = 0; k < row.seat_count && row.first_seat + k < seatCount; k++) {
        seatPixel[row.first_seat + k] = y * PLAN_WIDTH + x0 + k;
      }
    });
    placed.push({ ...s, pos: i, color: SECTION_COLORS[i % SECTION_COLORS.length], top });
    top += perColumn;
  }
  const height = top + 1;
  const pixelSeat = new Int32Array(PLAN_WIDTH * height).fill(-1);
  seatPixel.forEach((p, k) => { if (p >= 0) pixelSeat[p] = k; });
  return { width: PLAN_WIDTH, height, seatPixel, pixelSeat, sections: placed };
}

// The section and row of seat k (binary searches: sections and rows are in
// seat order).
function findIn(list, k) {
  let lo = 0;
  let hi = list.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (list[mid].first_seat <= k) lo = mid; else hi = mid - 1;
  }
  return list[lo];
}

export class SeatMap {
  // canvas: the visible canvas; map: the seatmap JSON (layout and states
  // decoded by the caller into a Uint8Array of one state per seat).
  constructor(canvas, map, states) {
    this.canvas = canvas;
    this.map = map;
    this.states = states;
    this.mine = new Set();
    this.plan = layoutPlan(map.sections, map.seat_count);
    this.off = document.createElement('canvas');
    this.off.width = this.plan.width;
    this.off.height = this.plan.height;
    this.image = new ImageData(this.plan.width, this.plan.height);
    this.sectionRgb = this.plan.sections.map((s) => rgb(s.color));
    this.stateRgb = Object.fromEntries(Object.entries(STATE_COLORS).map(([k, v]) => [k, rgb(v)]));
    this.mineRgb = rgb(MINE_COLOR);
    this.view = { scale: 1, x: 0, y: 0 };
    this.paintAll();
    this.fit();
  }

  section(k) { return findIn(this.plan.sections, k); }

  // {section, row, number, price, currency, state, id} of seat k.
  describe(k) {
    const s = this.section(k);
    const row = findIn(s.rows, k);
    const part = findIn(this.map.partitions, k);
    return {
      seat_no: k,
      section: s.name,
      row: row.name,
      number: k - row.first_seat + 1,
      price: s.price,
      currency: s.currency,
      state: this.mine.has(k) ? 'YOURS' : STATE_NAME[this.states[k]],
      id: part.partition_id * 4294967296 + (k - part.first_seat),
    };
  }

  seatOfId(id) {
    const pid = Math.floor(id / 4294967296);
    const part = this.map.partitions.find((p) => p.partition_id === pid);
    return part ? part.first_seat + (id - pid * 4294967296) : -1;
  }

  paintSeat(k) {
    const p = this.plan.seatPixel[k];
    if (p < 0) return;
    const st = this.states[k];
    let c;
    if (this.mine.has(k)) c = this.mineRgb;
    else if (st === STATE.FREE) c = this.sectionRgb[this.section(k).pos];
    else c = this.stateRgb[st] || this.stateRgb[STATE.UNKNOWN];
    this.image.data.set(c, p * 4);
    this.dirty = true;
  }

  paintAll() {
    const d = this.image.data;
    for (let i = 0; i < d.length; i += 4) d.set(BACKGROUND, i);
    // Free seats by section first (the common case), in one pass per section.
    for (const [i, s] of this.plan.sections.entries()) {
      const c = this.sectionRgb[i];
      for (let k = s.first_seat; k < s.first_seat + s.seat_count; k++) {
        const p = this.plan.seatPixel[k];
        if (p >= 0 && this.states[k] === STATE.FREE && !this.mine.has(k)) d.set(c, p * 4);
        else if (p >= 0) this.paintSeat(k);
      }
    }
    this.dirty = true;
    this.draw();
  }

  // A whole new state array (a fresh /seatmap).
  replaceStates(states) {
    this.states = states;
    this.paintAll();
  }

  // [seat_no, state, seat_no, state, ...] as the live stream sends them.
  applyChanges(changes) {
    for (let i = 0; i + 1 < changes.length; i += 2) {
      const k = changes[i];
      if (k >= 0 && k < this.states.length) {
        this.states[k] = changes[i + 1];
        this.paintSeat(k);
      }
    }
    this.draw();
  }

  setMine(seatNos) {
    const before = this.mine;
    this.mine = new Set(seatNos);
    for (const k of before) this.paintSeat(k);
    for (const k of this.mine) this.paintSeat(k);
    this.draw();
  }

  // The whole plan in view.
  fit() {
    const w = this.canvas.clientWidth || this.canvas.width;
    const h = this.canvas.clientHeight || this.canvas.height;
    this.resize();
    this.view.scale = Math.max(SCALE_MIN, Math.min(w / this.plan.width, (h - 4) / this.plan.height));
    this.view.x = Math.max(0, (w - this.plan.width * this.view.scale) / 2);
    this.view.y = 0;
    this.draw();
  }

  resize() {
    const ratio = window.devicePixelRatio || 1;
    const w = Math.round((this.canvas.clientWidth || 800) * ratio);
    const h = Math.round((this.canvas.clientHeight || 600) * ratio);
    if (this.canvas.width !== w || this.canvas.height !== h) {
      this.canvas.width = w;
      this.canvas.height = h;
    }
    this.ratio = ratio;
  }

  // Zoom by factor around the canvas point (cx, cy) in CSS pixels.
  zoom(factor, cx, cy) {
    const v = this.view;
    const scale = Math.min(SCALE_MAX, Math.max(SCALE_MIN, v.scale * factor));
    v.x = cx - ((cx - v.x) * scale) / v.scale;
    v.y = cy - ((cy - v.y) * scale) / v.scale;
    v.scale = scale;
    this.draw();
  }

  // Seat k in the middle of the view, at least `scale` pixels wide.
  focus(k, scale = 12) {
    const p = this.plan.seatPixel[k];
    if (p < 0) return;
    const v = this.view;
    v.scale = Math.min(SCALE_MAX, Math.max(v.scale, scale));
    v.x = (this.canvas.clientWidth || 800) / 2 - ((p % this.plan.width) + 0.5) * v.scale;
    v.y = (this.canvas.clientHeight || 600) / 2 - (Math.floor(p / this.plan.width) + 0.5) * v.scale;
    this.draw();
  }

  pan(dx, dy) {
    this.view.x += dx;
    this.view.y += dy;
    this.draw();
  }

  // The seat under the canvas point (cx, cy) in CSS pixels, or -1.
  seatAt(cx, cy) {
    const v = this.view;
    const px = Math.floor((cx - v.x) / v.scale);
    const py = Math.floor((cy - v.y) / v.scale);
    if (px < 0 || py < 0 || px >= this.plan.width || py >= this.plan.height) return -1;
    return this.plan.pixelSeat[py * this.plan.width + px];
  }

  // The canvas point (CSS pixels) at the middle of seat k.
  seatCenter(k) {
    const p = this.plan.seatPixel[k];
    const v = this.view;
    return {
      x: v.x + ((p % this.plan.width) + 0.5) * v.scale,
      y: v.y + (Math.floor(p / this.plan.width) + 0.5) * v.scale,
    };
  }

  draw() {
    if (this.frame) return;
    // One paint per animation frame, however many changes arrived.
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.drawNow();
    });
  }

  // Zoomed in, a thin gap around each seat so that seats can be told apart;
  // only the lines in view are drawn.
  drawGaps(g) {
    const v = this.view;
    const w = this.canvas.width / this.ratio;
    const h = this.canvas.height / this.ratio;
    const x0 = Math.max(0, Math.floor(-v.x / v.scale));
    const x1 = Math.min(this.plan.width, Math.ceil((w - v.x) / v.scale));
    const y0 = Math.max(0, Math.floor(-v.y / v.scale));
    const y1 = Math.min(this.plan.height, Math.ceil((h - v.y) / v.scale));
    g.beginPath();
    for (let x = x0; x <= x1; x++) {
      g.moveTo(v.x + x * v.scale, v.y + y0 * v.scale);
      g.lineTo(v.x + x * v.scale, v.y + y1 * v.scale);
    }
    for (let y = y0; y <= y1; y++) {
      g.moveTo(v.x + x0 * v.scale, v.y + y * v.scale);
      g.lineTo(v.x + x1 * v.scale, v.y + y * v.scale);
    }
    g.strokeStyle = '#fafafa';
    g.lineWidth = Math.min(2, v.scale / 8);
    g.stroke();
  }

  drawNow() {
    this.resize();
    if (this.dirty) {
      this.off.getContext('2d').putImageData(this.image, 0, 0);
      this.dirty = false;
    }
    const g = this.canvas.getContext('2d');
    const v = this.view;
    g.setTransform(this.ratio, 0, 0, this.ratio, 0, 0);
    g.fillStyle = '#fafafa';
    g.fillRect(0, 0, this.canvas.width, this.canvas.height);
    g.imageSmoothingEnabled = false;
    g.drawImage(this.off, v.x, v.y, this.plan.width * v.scale, this.plan.height * v.scale);
    if (v.scale >= GRID_SCALE_MIN) this.drawGaps(g);
    g.fillStyle = '#111';
    g.font = '12px system-ui, sans-serif';
    g.textBaseline = 'bottom';
    for (const s of this.plan.sections) {
      g.fillText(`${s.name}`, v.x + 2, v.y + s.top * v.scale - 1);
    }
    this.drawn = (this.drawn || 0) + 1;
  }
}

// The "nibbles" encoding: seat k's state is in byte k >> 1, low nibble for
// even k, high for odd.
export function decodeNibbles(base64, seatCount) {
  const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
  const states = new Uint8Array(seatCount);
  for (let k = 0; k < seatCount; k++) {
    const b = bytes[k >> 1] ?? 0xff;
    states[k] = k & 1 ? b >> 4 : b & 15;
  }
  return states;
}

// Shared by pool2d.wgsl and unpool2d.wgsl: the window geometry of `Pool2d`.
// "in" is the unpooled side [planes, in_h, in_w], "out" the pooled side [planes, out_h, out_w].
// A plane too large for one binding runs in bands of rows: then one plane is bound, in_h/out_h
// stay the whole plane's, the bound unpooled rows start at global row `row0` and the bound
// pooled rows at `orow0`; coordinates, indices and divisors are all global.

struct PoolParams {
    total: u32, planes: u32, in_h: u32, in_w: u32,
    out_h: u32, out_w: u32, k_h: u32, k_w: u32,
    s_h: u32, s_w: u32, p_h: u32, p_w: u32,
    d_h: u32, d_w: u32, count_include_pad: u32, seed_lo: u32,
    seed_hi: u32, idx_plane: u32, pos_base: u32, row0: u32,
    orow0: u32, pos_lo: u32, _pad0: u32, _pad1: u32,
    // fast_div magics of out_w, out_h, in_w, in_h, s_h, s_w.
    dv_ow: vec2<u32>, dv_oh: vec2<u32>, dv_iw: vec2<u32>, dv_ih: vec2<u32>,
    dv_sh: vec2<u32>, dv_sw: vec2<u32>,
}

@group(0) @binding(0) var<uniform> p: PoolParams;

// The window size, compiled into the pipeline for small windows (so the tap loops unroll: the
// host sets both through pipeline constants), else 0 and read from the params.
override WIN_H: u32 = 0u;
override WIN_W: u32 = 0u;

fn win_h() -> u32 { return select(p.k_h, WIN_H, WIN_H != 0u); }
fn win_w() -> u32 { return select(p.k_w, WIN_W, WIN_W != 0u); }

// No position (yet).
const NONE: u32 = 0xffffffffu;

// The running maximum of max_pool2d's tap walk and its position.
struct Max { v: f32, at: u32 }

// Folds tap (in bounds: `ok`) of value `v` at `pos` into `m`, as PyTorch: the position starts
// at the first in-bounds tap; a strictly greater value (so the first maximum wins ties) or
// any NaN takes over. Start from Max(-inf, NONE).
fn max_tap(m: Max, ok: bool, v: f32, pos: u32) -> Max {
    let at = select(m.at, pos, ok && m.at == NONE);
    let better = ok && (v > m.v || is_nan(v));
    return Max(select(m.v, v, better), select(at, pos, better));
}

// A pooled element: its plane, its global row and column, and the global input coordinates of
// its window's first tap. `o` is the element's flat position in the bound pooled tensor.
struct Window { plane: u32, oy: u32, ox: u32, y0: i32, x0: i32 }

fn window_of(o: u32) -> Window {
    let row = fast_div(o, p.dv_ow);
    let ox = o - row * p.out_w;
    let plane = fast_div(row, p.dv_oh);
    let oy = row - plane * p.out_h + p.orow0;
    return Window(plane, oy, ox, i32(oy * p.s_h) - i32(p.p_h), i32(ox * p.s_w) - i32(p.p_w));
}

// Taps inside [lo, hi) along one axis, for a window starting at `start`.
fn taps_within(start: i32, k: u32, d: u32, lo: i32, hi: i32) -> u32 {
    var n = 0u;
    for (var i = 0u; i < k; i++) {
        let t = start + i32(i * d);
        if (t >= lo && t < hi) { n++; }
    }
    return n;
}

// The coordinates avg_pool2d's divisor counts taps at: [y0, y1) × [x0, x1) as (y0, y1, x0, x1),
// the input or, with count_include_pad, the padded input.
fn counted() -> vec4<i32> {
    let pad = select(vec2<i32>(0), vec2<i32>(i32(p.p_h), i32(p.p_w)), p.count_include_pad != 0u);
    return vec4<i32>(-pad.x, i32(p.in_h) + pad.x, -pad.y, i32(p.in_w) + pad.y);
}

// avg_pool2d's divisor (PoolGeometry::divisor on the host).
fn divisor(win: Window) -> f32 {
    let c = counted();
    return f32(taps_within(win.y0, win_h(), p.d_h, c.x, c.y) * taps_within(win.x0, win_w(), p.d_w, c.z, c.w));
}

// The undilated windows along one axis that cover `pos`: [first, end), in the pooled range.
// Window o spans [o*s - pad, o*s - pad + k).
fn covering_range(pos: u32, k: u32, pad: u32, s: u32, dv_s: vec2<u32>, out: u32) -> vec2<u32> {
    let t = i32(pos + pad) - i32(k - 1u);
    var lo = 0u;
    if (t > 0) { lo = fast_div(u32(t) + s - 1u, dv_s); }
    let hi = min(fast_div(pos + pad, dv_s) + 1u, out);
    return vec2<u32>(lo, max(lo, hi));
}

// The pooled window `o` along one axis that tap `i` of which lands on `pos`, or -1.
fn covering(pos: u32, i: u32, pad: u32, d: u32, s: u32, dv_s: vec2<u32>, out: u32) -> i32 {
    let t = i32(pos + pad) - i32(i * d);
    if (t < 0) { return -1; }
    let o = fast_div(u32(t), dv_s);
    if (o * s != u32(t)) { return -1; }
    if (o >= out) { return -1; }
    return i32(o);
}

// Where unpooled element `pos` (global y * in_w + x) of the plane starting at `base` lies in
// the bound input.
fn in_at(base: u32, pos: u32) -> u32 {
    return base + pos - p.row0 * p.in_w;
}

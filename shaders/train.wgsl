// The training step's elementwise ops and losses, and the deterministic sum they reduce with.
// One invocation per element (or per pixel for the cross-entropy).

struct TrainParams {
    total: u32, kind: u32, a: f32, b: f32,
    c: f32, classes: u32, hw: u32, scale: f32,
}

@group(0) @binding(0) var<uniform> p: TrainParams;
@group(0) @binding(1) var<storage, read> in1: array<f32>;
@group(0) @binding(2) var<storage, read> in2: array<f32>;
@group(0) @binding(3) var<storage, read> in3: array<f32>;
@group(0) @binding(4) var<storage, read_write> out1: array<f32>;
@group(0) @binding(5) var<storage, read_write> out2: array<f32>;
@group(0) @binding(6) var<storage, read> labels: array<u32>;

// out1 = activation(in1); kind, a, b: `Activation::encode`.
@compute @workgroup_size(64)
fn act_forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.total) { return; }
    out1[i] = activate(in1[i], p.kind, p.a, p.b);
}

// out1 = the gradient through the activation from gy = in1 and the forward output y = in2.
@compute @workgroup_size(64)
fn act_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.total) { return; }
    out1[i] = activate_grad(in1[i], in2[i], p.kind, p.a, p.b);
}

// out1 = in1 + in2.
@compute @workgroup_size(64)
fn add(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
       @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.total) { return; }
    out1[i] = in1[i] + in2[i];
}

// SGD with momentum: w = in1, grad = in2, velocity = in3; a = lr, b = momentum,
// c = weight decay. out1 = the new weight, out2 = the new velocity.
@compute @workgroup_size(64)
fn sgd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
       @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.total) { return; }
    let w = in1[i];
    let v = p.b * in3[i] + (in2[i] + p.c * w);
    out2[i] = v;
    out1[i] = w - p.a * v;
}

// Softmax cross-entropy, one invocation per pixel (n, y, x) of `total`: logits = in1
// [N, classes, H, W] (hw = H·W), labels [N, H, W]. out1 = the gradient (softmax − onehot)·scale,
// out2[pixel] = the pixel's loss (summed by `sum_blocks`). The channel sums run in channel
// order, as on the CPU.
@compute @workgroup_size(64)
fn cross_entropy(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.total) { return; }
    let n = i / p.hw;
    let px = i % p.hw;
    let base = n * p.classes * p.hw + px;
    var m = in1[base];
    for (var c = 1u; c < p.classes; c++) {
        let v = in1[base + c * p.hw];
        if (v > m || is_nan(v)) { m = v; }
    }
    var s = 0.0;
    for (var c = 0u; c < p.classes; c++) {
        s += exp(in1[base + c * p.hw] - m);
    }
    let label = labels[i];
    for (var c = 0u; c < p.classes; c++) {
        let at = base + c * p.hw;
        let onehot = select(0.0, 1.0, c == label);
        out1[at] = (exp(in1[at] - m) / s - onehot) * p.scale;
    }
    out2[i] = log(s) - (in1[base + label * p.hw] - m);
}

// Mean squared error: prediction in1, target in2; out1 = the gradient 2·(in1 − in2)·scale,
// out2 = the squared differences (summed by `sum_blocks`).
@compute @workgroup_size(64)
fn squared_error(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.total) { return; }
    let d = in1[i] - in2[i];
    out1[i] = 2.0 * d * p.scale;
    out2[i] = d * d;
}

// The gradient of max_unpool2d: pooled element i (of `total`, `classes` per plane) gathers
// in1 (the gradient, planes of `hw`) at its index `labels[i]`, which the host has checked.
@compute @workgroup_size(64)
fn unpool_backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= p.total) { return; }
    out1[i] = in1[(i / p.classes) * p.hw + labels[i]];
}

// The values summed by each workgroup, and how many each invocation adds in order.
const BLOCK: u32 = 4096u;
var<workgroup> partial: array<f32, 64>;

// out1[g] = scale · the sum of in1[g·BLOCK .. (g+1)·BLOCK) ∩ [0, total): invocation l adds
// elements l, l + 64, … in order, then a tree over the 64 sums in a fixed order. The result
// depends on `total` alone, never on timing: deterministic.
@compute @workgroup_size(64)
fn sum_blocks(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let g = flat_group(wid, nwg);
    let start = g * BLOCK;
    var acc = 0.0;
    for (var j = lid; j < BLOCK; j += 64u) {
        let i = start + j;
        if (i < p.total) { acc += in1[i]; }
    }
    partial[lid] = acc;
    workgroupBarrier();
    for (var half = 32u; half > 0u; half >>= 1u) {
        if (lid < half) { partial[lid] = partial[lid] + partial[lid + half]; }
        workgroupBarrier();
    }
    if (lid == 0u) { out1[g] = partial[0] * p.scale; }
}

//! The SegNet-style encoder–decoder of the example, written once over a `Backend` that the GPU
//! (`Gpu`, on `GpuTensor`s) and the fast CPU path (`fast::`, on `Tensor`s) both implement.
//! Also used by tests/segnet.rs.
#![allow(dead_code)]

use convpool::{fast, Activation, Conv2d, Gpu, GpuTensor, Padding, Pool2d, Result, Sgd, Tensor};

/// The ops one training step needs, on one backend's tensors.
pub trait Backend {
    /// A float tensor.
    type T: Clone;
    /// An index tensor.
    type U: Clone;
    fn name(&self) -> &'static str;
    fn put(&self, t: &Tensor) -> Result<Self::T>;
    fn put_u32(&self, t: &Tensor<u32>) -> Result<Self::U>;
    fn get(&self, t: &Self::T) -> Result<Tensor>;
    fn conv_act(
        &self,
        x: &Self::T,
        w: &Self::T,
        b: &Self::T,
        s: &Conv2d,
        a: Activation,
    ) -> Result<Self::T>;
    fn conv_bw_input(
        &self,
        gy: &Self::T,
        w: &Self::T,
        hw: [usize; 2],
        s: &Conv2d,
    ) -> Result<Self::T>;
    fn conv_bw_weight(
        &self,
        gy: &Self::T,
        x: &Self::T,
        k: [usize; 2],
        s: &Conv2d,
    ) -> Result<Self::T>;
    fn bias_bw(&self, gy: &Self::T) -> Result<Self::T>;
    fn act_bw(&self, gy: &Self::T, y: &Self::T, a: Activation) -> Result<Self::T>;
    fn max_pool(&self, x: &Self::T, p: &Pool2d) -> Result<(Self::T, Self::U)>;
    fn max_unpool(&self, v: &Self::T, i: &Self::U, hw: [usize; 2]) -> Result<Self::T>;
    fn max_pool_bw(&self, g: &Self::T, i: &Self::U, hw: [usize; 2]) -> Result<Self::T>;
    fn max_unpool_bw(&self, g: &Self::T, i: &Self::U) -> Result<Self::T>;
    /// Mean loss (a one-element tensor) and the gradient with respect to the logits.
    fn cross_entropy(&self, logits: &Self::T, labels: &Self::U) -> Result<(Self::T, Self::T)>;
    fn sgd(&self, w: &Self::T, g: &Self::T, v: &Self::T, s: &Sgd) -> Result<(Self::T, Self::T)>;
}

impl Backend for Gpu {
    type T = GpuTensor;
    type U = GpuTensor<u32>;
    fn name(&self) -> &'static str {
        "gpu"
    }
    fn put(&self, t: &Tensor) -> Result<GpuTensor> {
        self.upload(t)
    }
    fn put_u32(&self, t: &Tensor<u32>) -> Result<GpuTensor<u32>> {
        self.upload(t)
    }
    fn get(&self, t: &GpuTensor) -> Result<Tensor> {
        t.download()
    }
    fn conv_act(
        &self,
        x: &GpuTensor,
        w: &GpuTensor,
        b: &GpuTensor,
        s: &Conv2d,
        a: Activation,
    ) -> Result<GpuTensor> {
        self.conv2d_act(x, w, Some(b), s, a)
    }
    fn conv_bw_input(
        &self,
        gy: &GpuTensor,
        w: &GpuTensor,
        hw: [usize; 2],
        s: &Conv2d,
    ) -> Result<GpuTensor> {
        self.conv2d_backward_input(gy, w, hw, s)
    }
    fn conv_bw_weight(
        &self,
        gy: &GpuTensor,
        x: &GpuTensor,
        k: [usize; 2],
        s: &Conv2d,
    ) -> Result<GpuTensor> {
        self.conv2d_backward_weight(gy, x, k, s)
    }
    fn bias_bw(&self, gy: &GpuTensor) -> Result<GpuTensor> {
        self.bias_backward(gy)
    }
    fn act_bw(&self, gy: &GpuTensor, y: &GpuTensor, a: Activation) -> Result<GpuTensor> {
        self.activation_backward(gy, y, a)
    }
    fn max_pool(&self, x: &GpuTensor, p: &Pool2d) -> Result<(GpuTensor, GpuTensor<u32>)> {
        self.max_pool2d(x, p)
    }
    fn max_unpool(&self, v: &GpuTensor, i: &GpuTensor<u32>, hw: [usize; 2]) -> Result<GpuTensor> {
        self.max_unpool2d(v, i, hw)
    }
    fn max_pool_bw(&self, g: &GpuTensor, i: &GpuTensor<u32>, hw: [usize; 2]) -> Result<GpuTensor> {
        self.max_pool2d_backward(g, i, hw)
    }
    fn max_unpool_bw(&self, g: &GpuTensor, i: &GpuTensor<u32>) -> Result<GpuTensor> {
        self.max_unpool2d_backward(g, i)
    }
    fn cross_entropy(&self, l: &GpuTensor, y: &GpuTensor<u32>) -> Result<(GpuTensor, GpuTensor)> {
        self.softmax_cross_entropy(l, y)
    }
    fn sgd(
        &self,
        w: &GpuTensor,
        g: &GpuTensor,
        v: &GpuTensor,
        s: &Sgd,
    ) -> Result<(GpuTensor, GpuTensor)> {
        self.sgd_update(w, g, v, s)
    }
}

/// The fast CPU path as a backend.
pub struct Fast;

impl Backend for Fast {
    type T = Tensor;
    type U = Tensor<u32>;
    fn name(&self) -> &'static str {
        "cpu-fast"
    }
    fn put(&self, t: &Tensor) -> Result<Tensor> {
        Ok(t.clone())
    }
    fn put_u32(&self, t: &Tensor<u32>) -> Result<Tensor<u32>> {
        Ok(t.clone())
    }
    fn get(&self, t: &Tensor) -> Result<Tensor> {
        Ok(t.clone())
    }
    fn conv_act(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        s: &Conv2d,
        a: Activation,
    ) -> Result<Tensor> {
        fast::conv2d_act(x, w, Some(b), s, a)
    }
    fn conv_bw_input(&self, gy: &Tensor, w: &Tensor, hw: [usize; 2], s: &Conv2d) -> Result<Tensor> {
        fast::conv2d_backward_input(gy, w, hw, s)
    }
    fn conv_bw_weight(&self, gy: &Tensor, x: &Tensor, k: [usize; 2], s: &Conv2d) -> Result<Tensor> {
        fast::conv2d_backward_weight(gy, x, k, s)
    }
    fn bias_bw(&self, gy: &Tensor) -> Result<Tensor> {
        fast::bias_backward(gy)
    }
    fn act_bw(&self, gy: &Tensor, y: &Tensor, a: Activation) -> Result<Tensor> {
        fast::activation_backward(gy, y, a)
    }
    fn max_pool(&self, x: &Tensor, p: &Pool2d) -> Result<(Tensor, Tensor<u32>)> {
        fast::max_pool2d(x, p)
    }
    fn max_unpool(&self, v: &Tensor, i: &Tensor<u32>, hw: [usize; 2]) -> Result<Tensor> {
        fast::max_unpool2d(v, i, hw)
    }
    fn max_pool_bw(&self, g: &Tensor, i: &Tensor<u32>, hw: [usize; 2]) -> Result<Tensor> {
        fast::max_pool2d_backward(g, i, hw)
    }
    fn max_unpool_bw(&self, g: &Tensor, i: &Tensor<u32>) -> Result<Tensor> {
        fast::max_unpool2d_backward(g, i)
    }
    fn cross_entropy(&self, l: &Tensor, y: &Tensor<u32>) -> Result<(Tensor, Tensor)> {
        let (loss, g) = fast::softmax_cross_entropy(l, y)?;
        Ok((Tensor::new([1], vec![loss])?, g))
    }
    fn sgd(&self, w: &Tensor, g: &Tensor, v: &Tensor, s: &Sgd) -> Result<(Tensor, Tensor)> {
        fast::sgd_update(w, g, v, s)
    }
}

/// Classes: background, rectangle, disk.
pub const CLASSES: usize = 3;

/// The layers: (input channels, output channels, kernel size); the last one is the 1×1
/// classifier without activation.
pub const LAYERS: [(usize, usize, usize); 5] = [
    (1, 16, 3),
    (16, 32, 3),
    (32, 16, 3),
    (16, 16, 3),
    (16, CLASSES, 1),
];

/// He-initialised weights and zero biases, from `seed` (SplitMix64 and Box–Muller).
pub fn init_weights(seed: u64) -> Vec<(Tensor, Tensor)> {
    let mut s = seed;
    let mut next = move || {
        s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    };
    LAYERS
        .iter()
        .map(|&(ci, co, k)| {
            let std = (2.0 / (ci * k * k) as f64).sqrt();
            let w = Tensor::from_fn([co, ci, k, k], |_| {
                let (u, v) = (next().max(1e-12), next());
                (std * (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()) as f32
            })
            .unwrap();
            (w, Tensor::zeros([co]).unwrap())
        })
        .collect()
}

/// The network's parameters and their velocities on one backend.
pub struct Net<B: Backend> {
    pub params: Vec<(B::T, B::T)>,
    pub velocity: Vec<(B::T, B::T)>,
}

/// What the forward pass keeps for the backward one.
pub struct Saved<B: Backend> {
    x: B::T,
    c1: B::T,
    i1: B::U,
    p1: B::T,
    c2: B::T,
    i2: B::U,
    u2: B::T,
    c3: B::T,
    u1: B::T,
    c4: B::T,
}

fn same() -> Conv2d {
    Conv2d {
        padding: Padding::Same,
        ..Default::default()
    }
}

const RELU: Activation = Activation::Relu;

impl<B: Backend> Net<B> {
    /// The network on `b`, from host weights.
    pub fn new(b: &B, weights: &[(Tensor, Tensor)]) -> Result<Self> {
        let put = |(w, bias): &(Tensor, Tensor)| Ok((b.put(w)?, b.put(bias)?));
        let zero = |(w, bias): &(Tensor, Tensor)| {
            Ok((
                b.put(&Tensor::zeros(w.shape())?)?,
                b.put(&Tensor::zeros(bias.shape())?)?,
            ))
        };
        Ok(Net {
            params: weights.iter().map(put).collect::<Result<_>>()?,
            velocity: weights.iter().map(zero).collect::<Result<_>>()?,
        })
    }

    /// The logits `[N, 3, H, W]` of images `x` `[N, 1, H, W]`, and what the backward pass needs.
    pub fn forward(&self, b: &B, x: &B::T, [h, w]: [usize; 2]) -> Result<(B::T, Saved<B>)> {
        let p = &self.params;
        let pool = Pool2d::new([2, 2]);
        let c1 = b.conv_act(x, &p[0].0, &p[0].1, &same(), RELU)?;
        let (p1, i1) = b.max_pool(&c1, &pool)?;
        let c2 = b.conv_act(&p1, &p[1].0, &p[1].1, &same(), RELU)?;
        let (p2, i2) = b.max_pool(&c2, &pool)?;
        let u2 = b.max_unpool(&p2, &i2, [h / 2, w / 2])?;
        let c3 = b.conv_act(&u2, &p[2].0, &p[2].1, &same(), RELU)?;
        let u1 = b.max_unpool(&c3, &i1, [h, w])?;
        let c4 = b.conv_act(&u1, &p[3].0, &p[3].1, &same(), RELU)?;
        let logits = b.conv_act(&c4, &p[4].0, &p[4].1, &same(), Activation::Identity)?;
        let saved = Saved {
            x: x.clone(),
            c1,
            i1,
            p1,
            c2,
            i2,
            u2,
            c3,
            u1,
            c4,
        };
        Ok((logits, saved))
    }

    /// The gradients of every (weight, bias) from the logits' gradient `gl`.
    pub fn backward(
        &self,
        b: &B,
        gl: &B::T,
        s: &Saved<B>,
        [h, w]: [usize; 2],
    ) -> Result<Vec<(B::T, B::T)>> {
        let p = &self.params;
        let (half, full) = ([h / 2, w / 2], [h, w]);
        let grads = |gy: &B::T, x: &B::T, k: usize| -> Result<(B::T, B::T)> {
            Ok((b.conv_bw_weight(gy, x, [k, k], &same())?, b.bias_bw(gy)?))
        };
        let g5 = grads(gl, &s.c4, 1)?;
        let gc4 = b.conv_bw_input(gl, &p[4].0, full, &same())?;
        let gz4 = b.act_bw(&gc4, &s.c4, RELU)?;
        let g4 = grads(&gz4, &s.u1, 3)?;
        let gu1 = b.conv_bw_input(&gz4, &p[3].0, full, &same())?;
        let gc3 = b.max_unpool_bw(&gu1, &s.i1)?;
        let gz3 = b.act_bw(&gc3, &s.c3, RELU)?;
        let g3 = grads(&gz3, &s.u2, 3)?;
        let gu2 = b.conv_bw_input(&gz3, &p[2].0, half, &same())?;
        let gp2 = b.max_unpool_bw(&gu2, &s.i2)?;
        let gc2 = b.max_pool_bw(&gp2, &s.i2, half)?;
        let gz2 = b.act_bw(&gc2, &s.c2, RELU)?;
        let g2 = grads(&gz2, &s.p1, 3)?;
        let gp1 = b.conv_bw_input(&gz2, &p[1].0, half, &same())?;
        let gc1 = b.max_pool_bw(&gp1, &s.i1, full)?;
        let gz1 = b.act_bw(&gc1, &s.c1, RELU)?;
        let g1 = grads(&gz1, &s.x, 3)?;
        Ok(vec![g1, g2, g3, g4, g5])
    }

    /// One SGD step on a batch; returns the batch's mean loss (on the backend: not read back).
    pub fn step(
        &mut self,
        b: &B,
        x: &B::T,
        labels: &B::U,
        hw: [usize; 2],
        sgd: &Sgd,
    ) -> Result<B::T> {
        let (logits, saved) = self.forward(b, x, hw)?;
        let (loss, gl) = b.cross_entropy(&logits, labels)?;
        let grads = self.backward(b, &gl, &saved, hw)?;
        for ((p, v), g) in self.params.iter_mut().zip(&mut self.velocity).zip(&grads) {
            let (w, vw) = b.sgd(&p.0, &g.0, &v.0, sgd)?;
            let (bias, vb) = b.sgd(&p.1, &g.1, &v.1, sgd)?;
            *p = (w, bias);
            *v = (vw, vb);
        }
        Ok(loss)
    }

    /// The predicted class of every pixel of `x` `[N, 1, H, W]`: `[N, H, W]`.
    pub fn predict(&self, b: &B, x: &B::T, hw: [usize; 2]) -> Result<Vec<u8>> {
        let logits = b.get(&self.forward(b, x, hw)?.0)?;
        let [n, c, h, w]: [usize; 4] = logits.shape().try_into().expect("rank 4");
        let l = logits.data();
        let mut out = Vec::with_capacity(n * h * w);
        for img in 0..n {
            for px in 0..h * w {
                let at = |k: usize| l[(img * c + k) * h * w + px];
                let best = (1..c).fold(0, |best, k| if at(k) > at(best) { k } else { best });
                out.push(best as u8);
            }
        }
        Ok(out)
    }
}

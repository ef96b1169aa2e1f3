//! Recycled tensor storage. A dropped host tensor's elements, when they take at least
//! [`MIN_BYTES`], are kept (up to [`MAX_BYTES`] in all) and handed to the next output of the
//! fast CPU path that fits, instead of going back to the allocator.
//!
//! Large allocations come from the operating system as fresh pages, and every first touch of a
//! page faults: on the benchmark machine a 3.2 MB output (W3's) written on fresh pages took
//! 2.1–2.5 ms against 1.24 ms on pages already touched, and a training step of
//! `train_segnet` spent a sixth of its time in page faults. glibc hands freed blocks back
//! to the system whenever the top of its heap is free, so a loop that drops its outputs and
//! makes new ones pays that again on every call; ONNX Runtime's arena allocator avoids it the
//! same way. [`crate::fast::release_buffers`] hands the kept buffers back.

use std::sync::Mutex;

use crate::tensor::Element;

/// Buffers smaller than this are left to the allocator, whose heap reuses them anyway.
const MIN_BYTES: usize = 256 << 10;
/// Bytes kept at most; beyond that a dropped buffer is freed.
const MAX_BYTES: usize = 256 << 20;

/// Kept buffers: (address, capacity in 4-byte elements).
struct Pool {
    bufs: Vec<(usize, usize)>,
    bytes: usize,
}

static POOL: Mutex<Pool> = Mutex::new(Pool {
    bufs: Vec::new(),
    bytes: 0,
});

fn pool() -> std::sync::MutexGuard<'static, Pool> {
    POOL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether `T`'s buffers are interchangeable with `f32`'s: the same size and alignment, so
/// that an allocation of `cap` of one has the layout of `cap` of the other.
fn recyclable<T>() -> bool {
    std::mem::size_of::<T>() == 4 && std::mem::align_of::<T>() == 4
}

impl Pool {
    /// Keeps `v`'s allocation, freeing the oldest kept ones where it would exceed
    /// [`MAX_BYTES`] (so that the sizes a loop is using now stay), or frees it.
    fn give<T: Element>(&mut self, v: Vec<T>) {
        let cap = v.capacity();
        if !recyclable::<T>() || cap * 4 < MIN_BYTES || cap * 4 > MAX_BYTES {
            return;
        }
        while self.bytes + cap * 4 > MAX_BYTES {
            let (ptr, old) = self.bufs.remove(0);
            self.bytes -= old * 4;
            // SAFETY: as in `take`; the buffer is freed as the `Vec<f32>` it is laid out as.
            drop(unsafe { Vec::from_raw_parts(ptr as *mut f32, 0, old) });
        }
        let mut v = std::mem::ManuallyDrop::new(v);
        self.bufs.push((v.as_mut_ptr() as usize, cap));
        self.bytes += cap * 4;
    }

    /// A kept buffer of between `len` and `2·len` elements (the smallest), emptied.
    fn take<T: Element>(&mut self, len: usize) -> Option<Vec<T>> {
        if !recyclable::<T>() || len * 4 < MIN_BYTES {
            return None;
        }
        let (i, _) = (self.bufs.iter().enumerate())
            .filter(|(_, &(_, cap))| cap >= len && cap / 2 <= len)
            .min_by_key(|(_, &(_, cap))| cap)?;
        let (ptr, cap) = self.bufs.swap_remove(i);
        self.bytes -= cap * 4;
        // SAFETY: `ptr` came from a `Vec` of `cap` elements of a type of size 4 and alignment
        // 4 (`give`), allocated by the global allocator with the layout that `cap` elements of
        // `T` (also size 4, alignment 4) have, and nothing else owns it.
        Some(unsafe { Vec::from_raw_parts(ptr as *mut T, 0, cap) })
    }

    /// Frees every kept buffer.
    fn release(&mut self) {
        for (ptr, cap) in std::mem::take(&mut self.bufs) {
            // SAFETY: as in `take`; the buffer is freed as the `Vec<f32>` it is laid out as.
            drop(unsafe { Vec::from_raw_parts(ptr as *mut f32, 0, cap) });
        }
        self.bytes = 0;
    }
}

/// Keeps `v`'s allocation for a later [`take`], or frees it.
pub(crate) fn give<T: Element>(v: Vec<T>) {
    if recyclable::<T>() && v.capacity() * 4 >= MIN_BYTES {
        pool().give(v);
    }
}

/// An empty `Vec` with room for at least `len` elements: a kept buffer of between `len` and
/// `2·len` elements where one exists (the smallest), else a new allocation.
pub(crate) fn take<T: Element>(len: usize) -> Vec<T> {
    let kept = if recyclable::<T>() && len * 4 >= MIN_BYTES {
        pool().take(len)
    } else {
        None
    };
    kept.unwrap_or_else(|| Vec::with_capacity(len))
}

/// `len` copies of `T::default()` (zero) in a recycled buffer where one fits.
pub(crate) fn zeroed<T: Element>(len: usize) -> Vec<T> {
    let mut v = take(len);
    v.resize(len, T::default());
    v
}

/// Frees every kept buffer.
pub(crate) fn release() {
    pool().release();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropped_buffers_come_back_to_outputs_that_fit() {
        let mut p = Pool {
            bufs: Vec::new(),
            bytes: 0,
        };
        let len = MIN_BYTES; // floats: 4 × MIN_BYTES bytes
        let v: Vec<f32> = vec![1.0; len];
        let addr = v.as_ptr() as usize;
        p.give(v);
        // Too small for it (less than half), or too large: nothing; then one it fits, of
        // another element type of the same layout: the same allocation, emptied.
        assert!(p.take::<f32>(len / 2 - 1).is_none() && p.take::<f32>(len + 1).is_none());
        let again = p.take::<u32>(len - 3).unwrap();
        assert_eq!((again.as_ptr() as usize, again.len()), (addr, 0));
        assert!(again.capacity() >= len && p.bufs.is_empty() && p.bytes == 0);
        // Small buffers are left to the allocator.
        p.give(vec![0.0f32; 16]);
        assert!(p.bufs.is_empty());
        p.give(again);
        assert_eq!((p.bufs.len(), p.bytes), (1, 4 * len));
        // The pool is bounded: a buffer over the bound is freed; one that would exceed it
        // frees the oldest.
        p.give(vec![0.0f32; MAX_BYTES / 4 + 1]);
        assert_eq!(p.bufs.len(), 1);
        let big = MAX_BYTES / 4 - len + 1;
        let newest = vec![0.0f32; big];
        let at = newest.as_ptr() as usize;
        p.give(newest);
        assert_eq!((p.bufs.clone(), p.bytes), (vec![(at, big)], 4 * big));
        p.release();
        assert!(p.bufs.is_empty() && p.bytes == 0);
    }
}

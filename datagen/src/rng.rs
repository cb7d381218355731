//! A tiny deterministic pseudo-random generator (xoshiro256++ seeded with
//! splitmix64). Only integer arithmetic, so the output is identical on every
//! platform.

/// One step of splitmix64; advances `x` and returns a well-mixed value.
pub(crate) fn splitmix64(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// xoshiro256++ state.
#[derive(Clone, Debug)]
pub(crate) struct Rng {
    s: [u64; 4],
}

impl Rng {
    /// A generator for one independent stream: (`seed`, `id`, `stream`) select
    /// it, e.g. (dataset seed, contact id, "profile" or "events").
    pub(crate) fn new(seed: u64, id: u64, stream: u64) -> Rng {
        let mut x = seed
            ^ id.wrapping_mul(0xD1B5_4A32_D192_ED03)
            ^ stream.wrapping_mul(0x8CB9_2BA7_2F3D_8DD7);
        // Mix twice so that nearby ids do not give correlated first outputs.
        splitmix64(&mut x);
        let s = [
            splitmix64(&mut x),
            splitmix64(&mut x),
            splitmix64(&mut x),
            splitmix64(&mut x),
        ];
        Rng { s }
    }

    /// Next 64 random bits.
    #[inline]
    pub(crate) fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in `0..n` (`n > 0`; multiply-shift, bias below 2^-40 for the
    /// ranges used here).
    #[inline]
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// Uniform in `lo..=hi`.
    #[inline]
    pub(crate) fn range(&mut self, lo: u64, hi: u64) -> u64 {
        debug_assert!(lo <= hi);
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `permille / 1000`.
    #[inline]
    pub(crate) fn chance(&mut self, permille: u32) -> bool {
        self.below(1000) < permille as u64
    }

    /// Uniform element of a non-empty slice.
    #[inline]
    pub(crate) fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len() as u64) as usize]
    }

    /// Index drawn with the given weights (not all zero).
    #[inline]
    pub(crate) fn weighted<T>(&mut self, items: &[T], weight: impl Fn(&T) -> u32) -> usize {
        let total: u64 = items.iter().map(|t| weight(t) as u64).sum();
        debug_assert!(total > 0);
        let mut r = self.below(total);
        for (i, t) in items.iter().enumerate() {
            let w = weight(t) as u64;
            if r < w {
                return i;
            }
            r -= w;
        }
        items.len() - 1
    }

    /// `num / den` rounded up or down at random so that the expectation is
    /// exactly `num / den`.
    pub(crate) fn dither(&mut self, num: u128, den: u128) -> u64 {
        debug_assert!(den > 0);
        let q = num / den;
        let (mut rem, mut den) = (num % den, den);
        while den > u64::MAX as u128 {
            rem >>= 1;
            den >>= 1;
        }
        let up = (self.below(den as u64) as u128) < rem;
        (q + up as u128) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_deterministic_and_distinct() {
        let mut a = Rng::new(42, 7, 1);
        let mut b = Rng::new(42, 7, 1);
        let mut c = Rng::new(42, 7, 2);
        let mut d = Rng::new(42, 8, 1);
        let va: Vec<u64> = (0..8).map(|_| a.next_u64()).collect();
        let vb: Vec<u64> = (0..8).map(|_| b.next_u64()).collect();
        let vc: Vec<u64> = (0..8).map(|_| c.next_u64()).collect();
        let vd: Vec<u64> = (0..8).map(|_| d.next_u64()).collect();
        assert_eq!(va, vb);
        assert_ne!(va, vc);
        assert_ne!(va, vd);
    }

    #[test]
    fn below_and_dither_are_in_range() {
        let mut r = Rng::new(1, 2, 3);
        let mut hist = [0u32; 10];
        for _ in 0..100_000 {
            hist[r.below(10) as usize] += 1;
        }
        for h in hist {
            assert!((9_000..11_000).contains(&h), "{hist:?}");
        }
        let total: u64 = (0..100_000).map(|_| r.dither(7, 4)).sum();
        // expectation 1.75 per draw
        assert!((172_000..178_000).contains(&total), "{total}");
    }
}

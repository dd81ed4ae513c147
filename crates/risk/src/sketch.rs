//! Bounded-memory summaries: a few heavy hitters, decaying counters, a count-min sketch, a distinct counter.

/// The `N` heaviest values seen, by fingerprint, with weights. A new value takes the lightest slot and starts
/// from its own weight (not the evicted one's), so a value never looks more familiar than it is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TopK<const N: usize> {
    keys: [u32; N],
    weights: [f32; N],
}

impl<const N: usize> Default for TopK<N> {
    fn default() -> Self {
        TopK { keys: [0; N], weights: [0.0; N] }
    }
}

impl<const N: usize> TopK<N> {
    /// The weight of `key` (0 when not held).
    pub fn weight(&self, key: u32) -> f32 {
        self.keys.iter().position(|&k| k == key).map_or(0.0, |i| self.weights[i])
    }

    /// Adds `w` to `key`'s weight, evicting the lightest value when full.
    pub fn add(&mut self, key: u32, w: f32) {
        if let Some(i) = self.keys.iter().position(|&k| k == key) {
            self.weights[i] += w;
            return;
        }
        let mut lightest = 0;
        for i in 1..N {
            if self.weights[i] < self.weights[lightest] {
                lightest = i;
            }
        }
        self.keys[lightest] = key;
        self.weights[lightest] = w;
    }

    /// How many values it holds.
    pub fn held(&self) -> usize {
        self.weights.iter().filter(|w| **w > 0.0).count()
    }

    /// Multiplies every weight by `factor` (ageing).
    pub fn scale(&mut self, factor: f32) {
        for w in &mut self.weights {
            *w *= factor;
        }
    }

    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        for i in 0..N {
            out.extend_from_slice(&self.keys[i].to_le_bytes());
            out.extend_from_slice(&self.weights[i].to_le_bytes());
        }
    }

    pub(crate) fn read(input: &mut crate::profile::Reader<'_>) -> Option<Self> {
        let mut sketch = TopK::default();
        for i in 0..N {
            sketch.keys[i] = input.u32()?;
            sketch.weights[i] = input.f32()?;
        }
        Some(sketch)
    }
}

/// A summary that counts one more of a value (a fingerprint; 0 means unknown and is not counted).
pub trait Tally {
    fn tally(&mut self, key: u32);
}

impl<const N: usize> Tally for TopK<N> {
    fn tally(&mut self, key: u32) {
        self.add(key, 1.0);
    }
}

impl Tally for CountMin {
    fn tally(&mut self, key: u32) {
        self.add(key, 1.0);
    }
}

/// Counts each known key in its summary.
pub fn tally_all<const N: usize>(summaries: [&mut dyn Tally; N], keys: [u32; N]) {
    for (summary, key) in summaries.into_iter().zip(keys) {
        if key != 0 {
            summary.tally(key);
        }
    }
}

/// A counter that decays exponentially with time constant `tau` seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Decayed {
    value: f32,
    at: f64,
}

impl Decayed {
    /// The value at `now`.
    pub fn value(&self, now: f64, tau: f64) -> f32 {
        if now <= self.at {
            return self.value;
        }
        self.value * (-(now - self.at) / tau).exp() as f32
    }

    /// Adds `w` at `now` and returns the new value.
    pub fn add(&mut self, now: f64, tau: f64, w: f32) -> f32 {
        self.value = self.value(now, tau) + w;
        self.at = self.at.max(now);
        self.value
    }

    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.value.to_le_bytes());
        out.extend_from_slice(&self.at.to_le_bytes());
    }

    pub(crate) fn read(input: &mut crate::profile::Reader<'_>) -> Option<Self> {
        Some(Decayed { value: input.f32()?, at: input.f64()? })
    }
}

/// A count-min sketch of `ROWS` × `WIDTH` counters: population frequencies in fixed memory.
#[derive(Debug, Clone)]
pub struct CountMin {
    cells: Vec<f32>,
    total: f64,
}

const ROWS: usize = 4;
const WIDTH: usize = 4096;

impl Default for CountMin {
    fn default() -> Self {
        CountMin { cells: vec![0.0; ROWS * WIDTH], total: 0.0 }
    }
}

impl CountMin {
    fn slot(key: u32, row: usize) -> usize {
        let mixed =
            u64::from(key).wrapping_mul(0x9e37_79b9_7f4a_7c15 ^ (row as u64).wrapping_mul(0xbf58_476d_1ce4_e5b9));
        row * WIDTH + ((mixed >> 40) as usize % WIDTH)
    }

    pub fn add(&mut self, key: u32, w: f32) {
        for row in 0..ROWS {
            self.cells[Self::slot(key, row)] += w;
        }
        self.total += f64::from(w);
    }

    /// The estimated share of all weight that `key` holds (an over-estimate, never under).
    pub fn share(&self, key: u32) -> f64 {
        if self.total <= 0.0 {
            return 0.0;
        }
        let min = (0..ROWS).map(|row| self.cells[Self::slot(key, row)]).fold(f32::INFINITY, f32::min);
        f64::from(min) / self.total
    }

    pub fn total(&self) -> f64 {
        self.total
    }

    /// Halves every counter, so the population follows change.
    pub fn halve(&mut self) {
        for cell in &mut self.cells {
            *cell *= 0.5;
        }
        self.total *= 0.5;
    }
}

/// A 128-bit linear-counting sketch of distinct values: exact-ish to a few dozen, saturating near 500.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Distinct {
    bits: u128,
}

impl Distinct {
    pub fn add(&mut self, key: u32) {
        let mixed = u64::from(key).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.bits |= 1u128 << ((mixed >> 57) as u32);
    }

    /// The estimated number of distinct values added.
    pub fn estimate(&self) -> f32 {
        let zeros = self.bits.count_zeros().max(1) as f32;
        128.0 * (128.0 / zeros).ln()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topk_keeps_the_heavy_values() {
        let mut top = TopK::<3>::default();
        for _ in 0..10 {
            top.add(7, 1.0);
        }
        top.add(8, 1.0);
        top.add(9, 1.0);
        top.add(10, 2.0); // evicts 8 (or 9), not 7
        assert_eq!(top.weight(7), 10.0);
        assert_eq!(top.weight(10), 2.0);
        assert_eq!(top.weight(8) + top.weight(9), 1.0);
        top.scale(0.5);
        assert_eq!(top.weight(7), 5.0);
    }

    #[test]
    fn decayed_counters_decay() {
        let mut counter = Decayed::default();
        counter.add(100.0, 60.0, 1.0);
        counter.add(100.0, 60.0, 1.0);
        assert!((counter.value(160.0, 60.0) - 2.0 / std::f32::consts::E).abs() < 1e-4);
        // A late event never moves time backwards.
        counter.add(50.0, 60.0, 1.0);
        assert!(counter.value(100.0, 60.0) > 2.9);
    }

    #[test]
    fn count_min_never_underestimates() {
        let mut sketch = CountMin::default();
        for key in 1..5000u32 {
            sketch.add(key, 1.0);
        }
        sketch.add(42, 100.0);
        assert!(sketch.share(42) >= 101.0 / sketch.total());
        assert!(sketch.share(42) < 110.0 / sketch.total());
    }

    #[test]
    fn distinct_counts_roughly() {
        let mut distinct = Distinct::default();
        for key in 0..40u32 {
            distinct.add(crate::event::fingerprint(0, &key.to_le_bytes()));
            distinct.add(crate::event::fingerprint(0, &key.to_le_bytes()));
        }
        let estimate = distinct.estimate();
        assert!((30.0..52.0).contains(&estimate), "{estimate}");
    }
}

//! A fixed-capacity ring buffer: the status page's history costs the same memory after a
//! minute as after a month.

use std::collections::VecDeque;

/// The newest `capacity` values pushed, oldest first. Never grows past `capacity`: pushing
/// into a full ring drops the oldest value, and the storage is allocated once.
#[derive(Debug, Clone)]
pub struct Ring<T> {
    values: VecDeque<T>,
    capacity: usize,
}

impl<T> Ring<T> {
    /// An empty ring holding at most `capacity` (>= 1) values.
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            values: VecDeque::with_capacity(capacity),
            capacity,
        }
    }

    /// Appends `value`, dropping the oldest one when full.
    pub fn push(&mut self, value: T) {
        if self.values.len() == self.capacity {
            self.values.pop_front();
        }
        self.values.push_back(value);
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The bound given at construction.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Slots actually allocated (for the memory test: stays at the bound).
    pub fn allocated(&self) -> usize {
        self.values.capacity()
    }

    /// Oldest first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &T> + ExactSizeIterator {
        self.values.iter()
    }

    pub fn newest(&self) -> Option<&T> {
        self.values.back()
    }

    /// The value `n` pushes before the newest (0 = newest), or the oldest one when the ring
    /// holds fewer.
    pub fn back(&self, n: usize) -> Option<&T> {
        let len = self.values.len();
        if len == 0 {
            return None;
        }
        self.values.get(len - 1 - n.min(len - 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_grows_past_its_capacity() {
        let mut ring = Ring::new(300);
        let allocated = ring.allocated();
        // An hour of one-second samples, and then some.
        for i in 0..3_600 * 24 {
            ring.push(i);
            assert!(ring.len() <= 300);
        }
        assert_eq!(ring.len(), 300);
        assert_eq!(ring.allocated(), allocated, "storage reallocated");
        assert_eq!(ring.iter().next(), Some(&(3_600 * 24 - 300)));
        assert_eq!(ring.newest(), Some(&(3_600 * 24 - 1)));
        assert_eq!(ring.back(0), Some(&(3_600 * 24 - 1)));
        assert_eq!(ring.back(1), Some(&(3_600 * 24 - 2)));
        assert_eq!(ring.back(10_000), Some(&(3_600 * 24 - 300)));
    }

    #[test]
    fn back_on_a_short_ring_is_the_oldest() {
        let mut ring = Ring::new(5);
        assert_eq!(ring.back(0), None::<&i32>);
        ring.push(1);
        ring.push(2);
        assert_eq!(ring.back(3), Some(&1));
        assert_eq!(ring.capacity(), 5);
    }
}

//! The byte buffer a plan's counter identities live in, back to back. The first
//! [`INLINE`] bytes sit inside the plan itself, so planning an ordinary request (a couple of
//! descriptors with a couple of limits each) does not allocate; a longer plan moves to the heap
//! once. `SmallVec<[u8; N]>` would do the same, but its `extend_from_slice` is an out-of-line
//! insert that cost more per identity than the allocation it saves.

use std::fmt;
use std::ops::Deref;

/// Identity bytes kept inline before the buffer moves to the heap.
pub(super) const INLINE: usize = 256;

/// An append-only byte buffer, inline up to [`INLINE`] bytes.
#[derive(Clone)]
pub(super) struct Keys {
    /// Bytes used in `inline` while `heap` is empty.
    len: usize,
    inline: [u8; INLINE],
    /// Every byte once the buffer outgrew `inline` (never empty then); empty before.
    heap: Vec<u8>,
}

impl Keys {
    /// An empty buffer.
    pub(super) const fn new() -> Self {
        Self {
            len: 0,
            inline: [0; INLINE],
            heap: Vec::new(),
        }
    }

    /// Makes room for `additional` more bytes at once, so a plan that will not fit inline
    /// allocates exactly once.
    pub(super) fn reserve_exact(&mut self, additional: usize) {
        if self.heap.is_empty() && self.len + additional > INLINE {
            self.heap.reserve_exact(self.len + additional);
        } else if !self.heap.is_empty() {
            self.heap.reserve_exact(additional);
        }
    }

    /// Appends `bytes`.
    #[inline]
    pub(super) fn extend_from_slice(&mut self, bytes: &[u8]) {
        if self.heap.is_empty() {
            let end = self.len + bytes.len();
            if let Some(slot) = self.inline.get_mut(self.len..end) {
                slot.copy_from_slice(bytes);
                self.len = end;
                return;
            }
            self.spill(bytes.len());
        }
        self.heap.extend_from_slice(bytes);
    }

    /// Appends one byte.
    #[inline]
    pub(super) fn push(&mut self, byte: u8) {
        self.extend_from_slice(&[byte]);
    }

    /// Moves the inline bytes to the heap, with room for `additional` more.
    #[cold]
    fn spill(&mut self, additional: usize) {
        self.heap.reserve(self.len + additional);
        self.heap.extend_from_slice(&self.inline[..self.len]);
    }

    /// Empties the buffer, keeping any heap capacity.
    pub(super) fn clear(&mut self) {
        self.len = 0;
        self.heap.clear();
    }
}

impl fmt::Debug for Keys {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The bytes in use, not the inline array's unused tail.
        fmt::Debug::fmt(&**self, formatter)
    }
}

impl Deref for Keys {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        if self.heap.is_empty() {
            &self.inline[..self.len]
        } else {
            &self.heap
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_read_back_in_order_inline_and_after_spilling() {
        let mut keys = Keys::new();
        keys.extend_from_slice(b"abc");
        keys.push(b'd');
        assert_eq!(&*keys, b"abcd");
        let long = vec![7u8; INLINE];
        keys.extend_from_slice(&long);
        assert_eq!(keys.len(), INLINE + 4);
        assert_eq!(&keys[..4], b"abcd");
        assert!(keys[4..].iter().all(|&byte| byte == 7));
        keys.push(9);
        assert_eq!(keys.last(), Some(&9));
        keys.clear();
        assert!(keys.is_empty());
        keys.extend_from_slice(b"xy");
        assert_eq!(&*keys, b"xy");
    }

    #[test]
    fn reserving_past_the_inline_bytes_allocates_once() {
        let mut keys = Keys::new();
        keys.extend_from_slice(b"ab");
        keys.reserve_exact(INLINE);
        let capacity = keys.heap.capacity();
        assert!(capacity >= INLINE + 2);
        keys.extend_from_slice(&[1; INLINE]);
        assert_eq!(keys.heap.capacity(), capacity);
        assert_eq!(&keys[..2], b"ab");
        assert_eq!(keys.len(), INLINE + 2);
    }

    #[test]
    fn an_empty_slice_is_a_no_op() {
        let mut keys = Keys::new();
        keys.extend_from_slice(&[]);
        assert!(keys.is_empty());
    }
}

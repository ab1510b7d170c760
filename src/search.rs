//! Substring search over bytes that arrive as a sequence of chunks (one per segment).
//!
//! `memchr` does the work inside each chunk; a needle that straddles a chunk boundary is found by
//! searching a small window made of the last `needle.len() - 1` bytes seen and the start of the
//! next chunk, so the search never copies more than twice the needle per boundary.

use memchr::memmem;

/// Finds the first occurrence of a needle in a stream of chunks fed in order.
pub(crate) struct ChunkSearch<'n> {
    needle: &'n [u8],
    finder: Option<memmem::Finder<'n>>,
    /// The last `needle.len() - 1` bytes fed (fewer at the start).
    carry: Vec<u8>,
    /// Stream offset of the first byte of the next chunk.
    offset: u64,
    window: Vec<u8>,
}

impl<'n> ChunkSearch<'n> {
    pub(crate) fn new(needle: &'n [u8]) -> Self {
        let finder = (needle.len() > 1).then(|| memmem::Finder::new(needle));
        Self { needle, finder, carry: Vec::new(), offset: 0, window: Vec::new() }
    }

    fn find_in(&self, hay: &[u8]) -> Option<usize> {
        match self.needle {
            [] => Some(0),
            [b] => memchr::memchr(*b, hay),
            _ => self.finder.as_ref().and_then(|f| f.find(hay)),
        }
    }

    /// Feeds the next chunk; returns the offset (from the first byte fed) of the first match that
    /// ends in this chunk, if any.
    pub(crate) fn feed(&mut self, chunk: &[u8]) -> Option<u64> {
        let keep = self.needle.len().saturating_sub(1);
        if keep > 0 && !self.carry.is_empty() {
            // A match starting in the carry and ending in this chunk.
            self.window.clear();
            self.window.extend_from_slice(&self.carry);
            self.window.extend_from_slice(&chunk[..chunk.len().min(keep)]);
            if let Some(i) = self.find_in(&self.window) {
                if i < self.carry.len() {
                    return Some(self.offset - self.carry.len() as u64 + i as u64);
                }
            }
        }
        if let Some(i) = self.find_in(chunk) {
            return Some(self.offset + i as u64);
        }
        if keep > 0 {
            if chunk.len() >= keep {
                self.carry.clear();
                self.carry.extend_from_slice(&chunk[chunk.len() - keep..]);
            } else {
                self.carry.extend_from_slice(chunk);
                let excess = self.carry.len().saturating_sub(keep);
                self.carry.drain(..excess);
            }
        }
        self.offset += chunk.len() as u64;
        None
    }
}

#[cfg(all(test, not(bodypipe_loom)))]
mod tests {
    use super::ChunkSearch;
    use proptest::prelude::*;

    /// The naive model: concatenate, then look at every offset.
    fn naive(chunks: &[Vec<u8>], needle: &[u8]) -> Option<u64> {
        let all: Vec<u8> = chunks.concat();
        if needle.is_empty() {
            return Some(0);
        }
        all.windows(needle.len()).position(|w| w == needle).map(|p| p as u64)
    }

    fn chunked(chunks: &[Vec<u8>], needle: &[u8]) -> Option<u64> {
        let mut s = ChunkSearch::new(needle);
        chunks.iter().find_map(|c| s.feed(c))
    }

    #[test]
    fn straddles_boundaries() {
        let chunks = vec![b"--bou".to_vec(), b"n".to_vec(), b"dary".to_vec()];
        assert_eq!(chunked(&chunks, b"--boundary"), Some(0));
        let chunks = vec![b"xx\r".to_vec(), b"\n".to_vec()];
        assert_eq!(chunked(&chunks, b"\r\n"), Some(2));
        assert_eq!(chunked(&chunks, b"\n"), Some(3));
        assert_eq!(chunked(&chunks, b"zz"), None);
    }

    proptest! {
        #[test]
        fn matches_naive(
            chunks in prop::collection::vec(prop::collection::vec(0u8..3, 0..8), 0..8),
            needle in prop::collection::vec(0u8..3, 1..4),
        ) {
            prop_assert_eq!(chunked(&chunks, &needle), naive(&chunks, &needle));
        }
    }
}

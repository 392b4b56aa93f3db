//! Making room in a full memory store: expired cells first, then the least recently used, until
//! the map is back under its target. Recency is estimated from a sample of cells, so an
//! eviction pass costs two walks of the map, not a sort of it.

use std::ptr;

use crate::clock::Timestamp;

use super::Cells;
use super::cell::Cell;
use super::key::CounterKey;

/// How many cells' last-use times estimate the recency cut-off.
const SAMPLE: usize = 4_096;

/// Removes cells until at most `target` remain (or nothing more can go); returns how many.
pub(super) fn down_to(cells: &Cells, target: usize, now: Timestamp) -> usize {
    let pinned = cells.pin();
    let mut removed = 0;
    let mut unlink = |key: &CounterKey, cell: &Cell| {
        if matches!(
            pinned.remove_if(key, |_, current| ptr::eq(current, cell)),
            Ok(Some(_))
        ) {
            removed += 1;
        }
    };
    for (key, cell) in pinned.iter() {
        if cell.kill_if_expired(now) {
            unlink(key, cell);
        }
    }
    let excess = pinned.len().saturating_sub(target);
    if excess == 0 {
        return removed;
    }
    // The last-use time below which about `excess` of the cells fall.
    let mut sample: Vec<u64> = pinned
        .iter()
        .take(SAMPLE)
        .map(|(_, cell)| cell.last_used())
        .collect();
    sample.sort_unstable();
    let total = pinned.len().max(1);
    let position = (excess * sample.len())
        .div_ceil(total)
        .min(sample.len().saturating_sub(1));
    let cutoff = sample.get(position).copied().unwrap_or(u64::MAX);
    let mut evicted = 0;
    for (key, cell) in pinned.iter() {
        if evicted >= excess {
            break;
        }
        if cell.last_used() <= cutoff && cell.kill() {
            unlink(key, cell);
            evicted += 1;
        }
    }
    removed
}

//! Ordered reads of operator state as it will be after the running epoch: the entries stored
//! under a prefix (the previous epoch's state) merged with the entries this epoch changes.

use std::collections::BTreeMap;

use datafusion::error::Result;
use freshet_state::Snapshot;

use crate::epoch::state_err;

/// One entry of a merged scan.
pub(crate) enum Entry<'a, T> {
    /// Unchanged by this epoch: the stored value.
    Stored(&'a [u8]),
    /// Changed by this epoch (possibly new, possibly deleted: the caller's `T` says).
    Changed(&'a T),
    /// Changed by this epoch, over a stored entry with the same key (its value).
    ChangedStored(&'a T, &'a [u8]),
}

/// Pages grow from `FIRST_PAGE` entries (most visits stop at the first entry) to `MAX_PAGE`.
const FIRST_PAGE: usize = 4;
const MAX_PAGE: usize = 1024;

/// Visits the entries under `prefix` in key order (descending when `reverse`) — stored ones
/// merged with `changed` (key suffix → new state), a changed entry replacing a stored one with
/// the same suffix (visited as [`Entry::ChangedStored`]) — until `visit` returns `false`. Reads the store in pages, so stopping
/// early reads little.
pub(crate) fn merged_scan<T>(
    snapshot: &Snapshot,
    prefix: &[u8],
    changed: &BTreeMap<Vec<u8>, T>,
    reverse: bool,
    mut visit: impl FnMut(&[u8], Entry<'_, T>) -> Result<bool>,
) -> Result<()> {
    let pending: Box<dyn Iterator<Item = (&Vec<u8>, &T)>> = if reverse {
        Box::new(changed.iter().rev())
    } else {
        Box::new(changed.iter())
    };
    let mut pending = pending.peekable();
    // Where the next page starts: the lower bound going forward, the upper going back.
    let mut resume: Option<Vec<u8>> = None;
    let mut size = FIRST_PAGE;
    loop {
        let page = if reverse {
            snapshot.scan_reverse(prefix, resume.as_deref(), size)
        } else {
            snapshot.scan(prefix, resume.as_deref().unwrap_or(prefix), None, size)
        }
        .map_err(state_err)?;
        for (k, v) in &page {
            let suffix = &k[prefix.len()..];
            // Changed entries that come before this stored one, in scan order.
            let before = |p: &[u8]| if reverse { p > suffix } else { p < suffix };
            while let Some((p, t)) = pending.peek() {
                if !before(p) {
                    break;
                }
                if !visit(p, Entry::Changed(t))? {
                    return Ok(());
                }
                pending.next();
            }
            let go_on = match pending.peek() {
                Some((p, t)) if p.as_slice() == suffix => {
                    let r = visit(p, Entry::ChangedStored(t, v))?;
                    pending.next();
                    r
                }
                _ => visit(suffix, Entry::Stored(v))?,
            };
            if !go_on {
                return Ok(());
            }
        }
        match page.last() {
            Some((last, _)) if page.len() == size => {
                resume = Some(if reverse {
                    last.to_vec()
                } else {
                    freshet_state::next_key(last)
                });
                size = (size * 4).min(MAX_PAGE);
            }
            _ => break,
        }
    }
    for (p, t) in pending {
        if !visit(p, Entry::Changed(t))? {
            break;
        }
    }
    Ok(())
}

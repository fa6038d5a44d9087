//! The changelog layout: one entry per epoch that changed a view retaining its changes.
//!
//! ```text
//! key   'c' <view id: u64 BE> <epoch: u64 BE>
//! value <commit time: i64 BE, µs since the Unix epoch> <rows: u32 BE>
//!       then per row: <weight: i64 BE> <row length: u32 BE> <row: row_codec>
//! ```
//! Keys sort by epoch within a view, so a subscriber resuming from an epoch reads one key
//! range, and expired epochs are one range deletion.

use freshet_common::{Datum, TableId};

use crate::{row_codec, Error, Keyspace, Result};

/// The prefix of every changelog entry of `view`.
pub fn changelog_prefix(view: TableId) -> Vec<u8> {
    let mut k = Vec::with_capacity(17);
    k.push(Keyspace::Changelog as u8);
    k.extend_from_slice(&view.0.to_be_bytes());
    k
}

/// The key of `view`'s changes in `epoch`.
pub fn changelog_key(view: TableId, epoch: u64) -> Vec<u8> {
    let mut k = changelog_prefix(view);
    k.extend_from_slice(&epoch.to_be_bytes());
    k
}

/// The metadata key holding the first epoch from which `view`'s changelog is complete
/// (u64 BE): the epoch after the view's creation, then after the last pruned entry.
pub fn since_key(view: TableId) -> Vec<u8> {
    crate::meta_key(format!("changelog/{}", view.0).as_bytes())
}

/// The metadata key of the last committed epoch's number (u64 BE).
pub fn epoch_key() -> Vec<u8> {
    crate::meta_key(b"epoch")
}

/// The epoch of a changelog key.
pub fn epoch_of(key: &[u8]) -> Result<u64> {
    key.get(9..17)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| Error::Corrupt("changelog key too short".into()))
}

/// Encodes one epoch's changes.
pub fn encode_entry(time_micros: i64, rows: &[(Vec<Datum>, i64)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(12 + rows.len() * 32);
    out.extend_from_slice(&time_micros.to_be_bytes());
    out.extend_from_slice(&(rows.len() as u32).to_be_bytes());
    let mut row = Vec::new();
    for (r, w) in rows {
        row.clear();
        row_codec::encode_row(r, &mut row);
        out.extend_from_slice(&w.to_be_bytes());
        out.extend_from_slice(&(row.len() as u32).to_be_bytes());
        out.extend_from_slice(&row);
    }
    out
}

/// The commit time of an entry, without decoding its rows.
pub fn entry_time(value: &[u8]) -> Result<i64> {
    value
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .map(i64::from_be_bytes)
        .ok_or_else(|| Error::Corrupt("changelog entry too short".into()))
}

/// Decodes an entry: its commit time and its rows with their weights.
pub fn decode_entry(value: &[u8]) -> Result<(i64, Vec<(Vec<Datum>, i64)>)> {
    let corrupt = || Error::Corrupt("changelog entry truncated".into());
    let time = entry_time(value)?;
    let n = value
        .get(8..12)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_be_bytes)
        .ok_or_else(corrupt)?;
    let mut rest = &value[12..];
    let mut rows = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let w = rest
            .get(..8)
            .and_then(|b| b.try_into().ok())
            .map(i64::from_be_bytes)
            .ok_or_else(corrupt)?;
        let len = rest
            .get(8..12)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_be_bytes)
            .ok_or_else(corrupt)? as usize;
        let row = rest.get(12..12 + len).ok_or_else(corrupt)?;
        rows.push((row_codec::decode_row(row)?, w));
        rest = &rest[12 + len..];
    }
    Ok((time, rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let rows = vec![
            (vec![Datum::Int64(1), Datum::Text("a".into())], 1),
            (vec![Datum::Null, Datum::Text(String::new())], -2),
        ];
        let v = encode_entry(42, &rows);
        assert_eq!(entry_time(&v).unwrap(), 42);
        assert_eq!(decode_entry(&v).unwrap(), (42, rows));
        assert!(decode_entry(&v[..v.len() - 1]).is_err());
        let k = changelog_key(TableId(7), 99);
        assert_eq!(epoch_of(&k).unwrap(), 99);
        assert!(k.starts_with(&changelog_prefix(TableId(7))));
    }
}

/// The prefix of every recorded row error of `view` (rows it could not evaluate; see the
/// dataflow crate's `ops/bad_rows.rs`).
pub fn view_errors_prefix(view: TableId) -> Vec<u8> {
    crate::meta_key(format!("view_error/{:020}/", view.0).as_bytes())
}

/// The key of the `n`th row error of `view` in the epoch whose snapshot was `sequence`.
pub fn view_error_key(view: TableId, sequence: u64, n: usize) -> Vec<u8> {
    let mut k = view_errors_prefix(view);
    k.extend_from_slice(format!("{sequence:020}/{n:06}").as_bytes());
    k
}

/// A row error's value: weight (i64 BE), message length (u32 BE), message, row text.
pub fn encode_view_error(weight: i64, message: &str, row: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(12 + message.len() + row.len());
    v.extend_from_slice(&weight.to_be_bytes());
    v.extend_from_slice(&(message.len() as u32).to_be_bytes());
    v.extend_from_slice(message.as_bytes());
    v.extend_from_slice(row.as_bytes());
    v
}

/// Decodes [`encode_view_error`]: (weight, message, row).
pub fn decode_view_error(v: &[u8]) -> Result<(i64, String, String)> {
    let corrupt = || Error::Corrupt("view error entry".into());
    let weight = v.get(..8).and_then(|b| b.try_into().ok()).map(i64::from_be_bytes).ok_or_else(corrupt)?;
    let len = v.get(8..12).and_then(|b| b.try_into().ok()).map(u32::from_be_bytes).ok_or_else(corrupt)? as usize;
    let message = v.get(12..12 + len).ok_or_else(corrupt)?;
    let row = &v[12 + len..];
    Ok((
        weight,
        String::from_utf8_lossy(message).into_owned(),
        String::from_utf8_lossy(row).into_owned(),
    ))
}

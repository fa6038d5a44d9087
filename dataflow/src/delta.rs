//! Changes as they flow between operators: an Arrow batch whose rows each carry a signed
//! multiplicity (+n inserted n times, -n deleted n times).

use std::hash::BuildHasher;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::array::{Array, BooleanArray};
use datafusion::arrow::compute::{concat_batches, filter_record_batch};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::error::Result;
use freshet_common::Datum;
use freshet_sql::df_convert::{batch_to_rows, rows_to_full_batch};
use freshet_state::row_codec;
use hashbrown::{DefaultHashBuilder, HashTable};

/// A batch of changes: `weights[i]` is the multiplicity change of row `i` of `batch`.
#[derive(Debug, Clone)]
pub struct Delta {
    pub batch: RecordBatch,
    pub weights: Vec<i64>,
}

impl Delta {
    /// Changes given as datum rows with their weights.
    pub fn from_rows(rows: &[(Vec<Datum>, i64)], schema: &SchemaRef) -> Result<Delta> {
        let datums: Vec<&[Datum]> = rows.iter().map(|(r, _)| r.as_slice()).collect();
        let batch = rows_to_full_batch(&datums, schema)?;
        Ok(Delta {
            batch,
            weights: rows.iter().map(|(_, w)| *w).collect(),
        })
    }

    /// The changes as datum rows.
    pub fn to_rows(&self) -> Result<Vec<(Vec<Datum>, i64)>> {
        Ok(batch_to_rows(&self.batch)?
            .into_iter()
            .zip(self.weights.iter().copied())
            .collect())
    }

    pub fn len(&self) -> usize {
        self.weights.len()
    }

    pub fn is_empty(&self) -> bool {
        self.weights.is_empty()
    }

    /// The rows where `mask` is true (NULL counts as false).
    pub fn filter(&self, mask: &BooleanArray) -> Result<Delta> {
        let mask = match mask.nulls() {
            Some(_) => datafusion::arrow::compute::prep_null_mask_filter(mask),
            None => mask.clone(),
        };
        let batch = filter_record_batch(&self.batch, &mask)?;
        let weights = self
            .weights
            .iter()
            .zip(mask.values().iter())
            .filter(|(_, m)| *m)
            .map(|(w, _)| *w)
            .collect();
        Ok(Delta { batch, weights })
    }

    /// Concatenates deltas of one schema.
    pub fn concat(schema: &SchemaRef, parts: Vec<Delta>) -> Result<Delta> {
        let batches: Vec<&RecordBatch> = parts.iter().map(|d| &d.batch).collect();
        let batch = concat_batches(schema, batches)?;
        Ok(Delta {
            batch,
            weights: parts.into_iter().flat_map(|d| d.weights).collect(),
        })
    }
}

/// Sums the weights of equal rows and drops rows whose weights cancel out. Rows are compared
/// by their encoding, so equal values of one column type are equal rows.
pub fn consolidate(rows: Vec<(Vec<Datum>, i64)>) -> Vec<(Vec<u8>, Vec<Datum>, i64)> {
    // Places in `out`, found by the hash of their encoding: each key is stored once.
    let hasher = DefaultHashBuilder::default();
    let mut index: HashTable<usize> = HashTable::with_capacity(rows.len());
    let mut out: Vec<(Vec<u8>, Vec<Datum>, i64)> = Vec::with_capacity(rows.len());
    for (row, w) in rows {
        let key = encode(&row);
        let hash = hasher.hash_one(&key);
        match index.find(hash, |&i| out[i].0 == key).copied() {
            Some(i) => out[i].2 += w,
            None => {
                index.insert_unique(hash, out.len(), |&i| hasher.hash_one(&out[i].0));
                out.push((key, row, w));
            }
        }
    }
    out.retain(|(_, _, w)| *w != 0);
    out
}

/// The rows of a table's changes that a scan reading the columns `projection` passes on, with
/// their weights. Rows that agree on every column read and whose weights sum to zero — the old
/// and new versions of an UPDATE of columns the scan does not read — cancel and are left out;
/// every other row stays as it is.
pub fn without_unread_updates<'a>(
    rows: &'a [(Vec<Datum>, i64)],
    projection: &[usize],
) -> (Vec<&'a [Datum]>, Vec<i64>) {
    let all = |keep: &dyn Fn(usize) -> bool| -> (Vec<&'a [Datum]>, Vec<i64>) {
        (0..rows.len())
            .filter(|&i| keep(i))
            .map(|i| (rows[i].0.as_slice(), rows[i].1))
            .unzip()
    };
    let mixed = rows.iter().any(|(_, w)| *w < 0) && rows.iter().any(|(_, w)| *w > 0);
    if !mixed {
        return all(&|_| true);
    }
    // Every row's read values, encoded one after another in `keys`; rows with equal encodings
    // share a group, and a group the sum of its rows' weights.
    let hasher = DefaultHashBuilder::default();
    let mut keys: Vec<u8> = Vec::with_capacity(rows.len() * 8 * projection.len());
    // Where in `keys` each group's encoding is, and the group.
    let mut groups: HashTable<(std::ops::Range<usize>, usize)> =
        HashTable::with_capacity(rows.len());
    let mut sums: Vec<i64> = Vec::new();
    let mut group_of: Vec<usize> = Vec::with_capacity(rows.len());
    for (row, w) in rows {
        let start = keys.len();
        for &c in projection {
            row_codec::encode_value(row.get(c).unwrap_or(&Datum::Null), &mut keys);
        }
        let hash = hasher.hash_one(&keys[start..]);
        let g = match groups.find(hash, |(at, _)| keys[at.clone()] == keys[start..]) {
            Some(&(_, g)) => {
                keys.truncate(start);
                g
            }
            None => {
                let g = sums.len();
                sums.push(0);
                let at = start..keys.len();
                groups.insert_unique(hash, (at, g), |(at, _)| hasher.hash_one(&keys[at.clone()]));
                g
            }
        };
        sums[g] += w;
        group_of.push(g);
    }
    all(&|i| sums[group_of[i]] != 0)
}

/// The encoding of a row, used as its identity in state keys.
pub fn encode(row: &[Datum]) -> Vec<u8> {
    let mut key = Vec::new();
    row_codec::encode_row(row, &mut key);
    key
}

/// Appends `bytes` with a u32 BE length prefix, so a following component cannot be mistaken
/// for part of it and a prefix scan selects exactly this value.
pub fn push_len_prefixed(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// The value [`push_len_prefixed`] put at the start of `b`, and what follows it (`None` when
/// `b` is shorter than its length says).
pub fn split_len_prefixed(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let len = u32::from_be_bytes(b.get(..4)?.try_into().ok()?) as usize;
    let rest = &b[4..];
    (rest.len() >= len).then(|| rest.split_at(len))
}

/// An i64 multiplicity as stored.
pub fn encode_count(n: i64) -> [u8; 8] {
    n.to_be_bytes()
}

/// Reads a stored i64 multiplicity.
pub fn decode_count(b: &[u8]) -> Result<i64> {
    let arr: [u8; 8] = b.try_into().map_err(|_| {
        datafusion::error::DataFusionError::Internal("corrupt count in view state".into())
    })?;
    Ok(i64::from_be_bytes(arr))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(v: &[i64]) -> Vec<Datum> {
        v.iter().map(|&x| Datum::Int64(x)).collect()
    }

    #[test]
    fn updates_of_unread_columns_cancel() {
        // (key, read, unread): row 1's unread column updated, row 2's read column updated,
        // row 3 inserted, row 4 deleted, and a row inserted twice then once deleted.
        let rows = vec![
            (row(&[1, 10, 100]), -1),
            (row(&[1, 10, 101]), 1),
            (row(&[2, 20, 200]), -1),
            (row(&[2, 21, 200]), 1),
            (row(&[3, 30, 300]), 1),
            (row(&[4, 40, 400]), -1),
            (row(&[5, 50, 500]), 2),
            (row(&[5, 50, 501]), -1),
        ];
        let (kept, weights) = without_unread_updates(&rows, &[0, 1]);
        let kept: Vec<Vec<Datum>> = kept.into_iter().map(<[Datum]>::to_vec).collect();
        assert_eq!(
            kept,
            vec![
                row(&[2, 20, 200]),
                row(&[2, 21, 200]),
                row(&[3, 30, 300]),
                row(&[4, 40, 400]),
                row(&[5, 50, 500]),
                row(&[5, 50, 501]),
            ]
        );
        assert_eq!(weights, vec![-1, 1, 1, -1, 2, -1]);
        // Reading every column, nothing cancels; reading none, every row is in one group whose
        // weights sum to 1, so all stay; an UPDATE alone, read through no column, cancels.
        assert_eq!(without_unread_updates(&rows, &[0, 1, 2]).0.len(), rows.len());
        assert_eq!(without_unread_updates(&rows, &[]).0.len(), rows.len());
        assert!(without_unread_updates(&rows[..4], &[]).0.is_empty());
        // Only inserts: passed on as they are, short rows included.
        let inserts = vec![(row(&[1]), 1), (row(&[1, 2]), 1)];
        assert_eq!(without_unread_updates(&inserts, &[0, 1]).1, vec![1, 1]);
    }
}

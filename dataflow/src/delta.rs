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

//! Stored table rows straight into Arrow columns: where a backfill or a join's table side
//! reads many rows, each stored value goes from its bytes into its column's builder — only
//! the columns the view's scans take, no datum per value, no string allocated per text.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{self as a, ArrayBuilder, ArrayRef, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::error::Result;
use freshet_common::{Datum, ValueRef};
use freshet_sql::df_convert::{array_to_datums, rows_to_batch};
use freshet_state::row_codec::{self, Cell};

use crate::epoch::state_err;

/// Builds one Arrow batch from stored rows of a table: column `i` of the batch is the
/// table's column `i` where a scan takes it (typed as the scan's schema says), an all-NULL
/// column of type `Null` elsewhere — what a scan's appended rows look like (see
/// `Node::Scan`), so the rows flow through the view as appends.
pub struct ColumnsBuilder {
    /// Per table column: whether a scan takes it.
    wanted: Vec<bool>,
    /// Per table column: its builder, for the wanted ones.
    columns: Vec<Option<(DataType, Column)>>,
    rows: usize,
}

impl ColumnsBuilder {
    /// A builder of the columns `fields` names (table column → type).
    pub fn new(fields: &BTreeMap<usize, DataType>) -> Self {
        let width = fields.keys().next_back().map_or(0, |c| c + 1);
        let mut columns: Vec<Option<(DataType, Column)>> = (0..width).map(|_| None).collect();
        for (&c, dt) in fields {
            columns[c] = Some((dt.clone(), Column::new(dt)));
        }
        ColumnsBuilder {
            wanted: columns.iter().map(Option::is_some).collect(),
            columns,
            rows: 0,
        }
    }

    /// Rows pushed since the last batch.
    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Adds one stored row (a table's value, `row_codec`).
    pub fn push(&mut self, stored: &[u8]) -> Result<()> {
        let columns = &mut self.columns;
        let n = row_codec::visit_row(stored, &self.wanted, |c, cell| {
            if let Some((_, col)) = &mut columns[c] {
                col.push(cell);
            }
            Ok(())
        })
        .map_err(state_err)?;
        // A row written before its table's last columns were added lacks them: NULL.
        for (_, col) in self.columns.iter_mut().skip(n).flatten() {
            col.push(Cell::Ref(ValueRef::Null));
        }
        self.rows += 1;
        Ok(())
    }

    /// The rows pushed since the last batch, as one; the builder starts over.
    pub fn finish(&mut self) -> Result<RecordBatch> {
        let rows = std::mem::take(&mut self.rows);
        let mut fields = Vec::with_capacity(self.columns.len());
        let mut arrays = Vec::with_capacity(self.columns.len());
        for (i, c) in self.columns.iter_mut().enumerate() {
            let (dt, array) = match c {
                Some((dt, col)) => (dt.clone(), col.finish(dt)?),
                None => (
                    DataType::Null,
                    Arc::new(a::NullArray::new(rows)) as ArrayRef,
                ),
            };
            fields.push(Field::new(format!("c{i}"), dt, true));
            arrays.push(array);
        }
        let opts = a::RecordBatchOptions::new().with_row_count(Some(rows));
        Ok(RecordBatch::try_new_with_options(
            Arc::new(Schema::new(fields)),
            arrays,
            &opts,
        )?)
    }
}

/// One column being built: a typed builder for the common types, datums for the others
/// (and for a column that met a value of another type than its own: converted as rows of
/// datums are, `df_convert::rows_to_batch`).
enum Column {
    Bool(a::BooleanBuilder),
    Int16(a::Int16Builder),
    Int32(a::Int32Builder),
    Int64(a::Int64Builder),
    Float32(a::Float32Builder),
    Float64(a::Float64Builder),
    Decimal(a::Decimal128Builder),
    Text(a::StringBuilder),
    Date(a::Date32Builder),
    Time(a::Time64MicrosecondBuilder),
    Timestamp(a::TimestampMicrosecondBuilder),
    Datums(Vec<[Datum; 1]>),
}

impl Column {
    fn new(dt: &DataType) -> Self {
        match dt {
            DataType::Boolean => Column::Bool(Default::default()),
            DataType::Int16 => Column::Int16(Default::default()),
            DataType::Int32 => Column::Int32(Default::default()),
            DataType::Int64 => Column::Int64(Default::default()),
            DataType::Float32 => Column::Float32(Default::default()),
            DataType::Float64 => Column::Float64(Default::default()),
            DataType::Decimal128(..) => Column::Decimal(Default::default()),
            DataType::Utf8 => Column::Text(Default::default()),
            DataType::Date32 => Column::Date(Default::default()),
            DataType::Time64(TimeUnit::Microsecond) => Column::Time(Default::default()),
            DataType::Timestamp(TimeUnit::Microsecond, _) => Column::Timestamp(Default::default()),
            _ => Column::Datums(Vec::new()),
        }
    }

    fn push(&mut self, cell: Cell<'_>) {
        let v = match cell {
            Cell::Ref(v) => v,
            Cell::List(items) => return self.push_datum(Datum::List(items)),
        };
        macro_rules! typed {
            ($b:expr, $pat:path) => {
                match v {
                    $pat(x) => $b.append_value(x),
                    ValueRef::Null => $b.append_null(),
                    other => self.push_datum(other.to_datum()),
                }
            };
        }
        match self {
            Column::Bool(b) => typed!(b, ValueRef::Bool),
            Column::Int16(b) => typed!(b, ValueRef::Int16),
            Column::Int32(b) => typed!(b, ValueRef::Int32),
            Column::Int64(b) => typed!(b, ValueRef::Int64),
            Column::Float32(b) => typed!(b, ValueRef::Float32),
            Column::Float64(b) => typed!(b, ValueRef::Float64),
            Column::Decimal(b) => typed!(b, ValueRef::Decimal),
            Column::Text(b) => typed!(b, ValueRef::Text),
            Column::Date(b) => typed!(b, ValueRef::Date),
            Column::Time(b) => typed!(b, ValueRef::Time),
            Column::Timestamp(b) => typed!(b, ValueRef::Timestamp),
            Column::Datums(d) => d.push([v.to_datum()]),
        }
    }

    /// Adds `d` as a datum, turning a typed column into datums first.
    fn push_datum(&mut self, d: Datum) {
        if !matches!(self, Column::Datums(_)) {
            let built = self.builder().finish_cloned();
            let datums = array_to_datums(&built).unwrap_or_else(|_| vec![Datum::Null; built.len()]);
            *self = Column::Datums(datums.into_iter().map(|d| [d]).collect());
        }
        if let Column::Datums(v) = self {
            v.push([d]);
        }
    }

    fn builder(&mut self) -> &mut dyn ArrayBuilder {
        match self {
            Column::Bool(b) => b,
            Column::Int16(b) => b,
            Column::Int32(b) => b,
            Column::Int64(b) => b,
            Column::Float32(b) => b,
            Column::Float64(b) => b,
            Column::Decimal(b) => b,
            Column::Text(b) => b,
            Column::Date(b) => b,
            Column::Time(b) => b,
            Column::Timestamp(b) => b,
            Column::Datums(_) => unreachable!("datums have no builder"),
        }
    }

    /// The values pushed so far as an array of `dt`; the column starts over (as its type
    /// says, even if it had turned into datums).
    fn finish(&mut self, dt: &DataType) -> Result<ArrayRef> {
        let array: ArrayRef = match &mut *self {
            Column::Decimal(b) => {
                let DataType::Decimal128(p, s) = dt else {
                    unreachable!("decimal builders are made for decimal columns")
                };
                Arc::new(b.finish().with_precision_and_scale(*p, *s)?)
            }
            Column::Timestamp(b) => {
                let DataType::Timestamp(_, tz) = dt else {
                    unreachable!("timestamp builders are made for timestamp columns")
                };
                Arc::new(b.finish().with_timezone_opt(tz.clone()))
            }
            Column::Datums(rows) => {
                let schema = Arc::new(Schema::new(vec![Field::new("c", dt.clone(), true)]));
                let batch = rows_to_batch(rows, &schema, &[0])?;
                Arc::clone(batch.column(0))
            }
            other => other.builder().finish(),
        };
        *self = Column::new(dt);
        Ok(array)
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::Array;
    use freshet_sql::df_convert::datum_at;

    use super::*;

    fn stored(row: &[Datum]) -> Vec<u8> {
        let mut out = Vec::new();
        row_codec::encode_row(row, &mut out);
        out
    }

    #[test]
    fn builds_the_wanted_columns_as_rows_would() {
        let tz = DataType::Timestamp(TimeUnit::Microsecond, Some(Arc::from("+00:00")));
        let list = DataType::List(Arc::new(Field::new_list_field(DataType::Int64, true)));
        let fields: BTreeMap<usize, DataType> = [
            (0, DataType::Int32),
            (2, DataType::Utf8),
            (3, DataType::Decimal128(12, 2)),
            (4, tz),
            (5, list),
            (6, DataType::Int64),
        ]
        .into_iter()
        .collect();
        let rows = vec![
            vec![
                Datum::Int32(1),
                Datum::Text("skipped".into()),
                Datum::Text("héllo".into()),
                Datum::Decimal(1050),
                Datum::Timestamp(7),
                Datum::List(vec![Datum::Int64(3), Datum::Null]),
                Datum::Int64(9),
            ],
            vec![Datum::Null; 7],
            // Written before its last columns were added.
            vec![Datum::Int32(2), Datum::Null, Datum::Text("x".into())],
        ];
        let mut b = ColumnsBuilder::new(&fields);
        for r in &rows {
            b.push(&stored(r)).unwrap();
        }
        assert_eq!(b.len(), 3);
        let batch = b.finish().unwrap();
        assert!(b.is_empty());
        assert_eq!(batch.num_rows(), 3);
        assert_eq!(batch.num_columns(), 7);
        assert_eq!(batch.column(1).data_type(), &DataType::Null);
        for (&c, dt) in &fields {
            assert_eq!(batch.column(c).data_type(), dt, "column {c}");
        }
        let want = |r: usize, c: usize| rows[r].get(c).cloned().unwrap_or(Datum::Null);
        for r in 0..rows.len() {
            for &c in fields.keys() {
                assert_eq!(
                    datum_at(batch.column(c), r).unwrap(),
                    want(r, c),
                    "row {r} col {c}"
                );
            }
        }
        // It starts over.
        b.push(&stored(&rows[0])).unwrap();
        assert_eq!(b.finish().unwrap().num_rows(), 1);
    }

    /// A value of another type than its column's turns the column into datums, converted as
    /// rows of datums are: the same array, or the same refusal.
    #[test]
    fn a_value_of_another_type_is_converted_as_rows_are() {
        let fields: BTreeMap<usize, DataType> = [(0, DataType::Int64)].into_iter().collect();
        let schema = Arc::new(Schema::new(vec![Field::new("c", DataType::Int64, true)]));
        for other in [Datum::Int32(5), Datum::Text("x".into()), Datum::Null] {
            let rows = [[Datum::Int64(1)], [other.clone()], [Datum::Int64(2)]];
            let mut b = ColumnsBuilder::new(&fields);
            for r in &rows {
                b.push(&stored(r)).unwrap();
            }
            let as_rows = rows_to_batch(&rows, &schema, &[0]);
            match (b.finish(), as_rows) {
                (Ok(got), Ok(want)) => assert_eq!(got.column(0), want.column(0), "{other:?}"),
                (Err(_), Err(_)) => {}
                (got, want) => panic!("{other:?}: {got:?} against rows' {want:?}"),
            }
        }
    }

    #[test]
    fn no_columns_still_counts_rows() {
        let mut b = ColumnsBuilder::new(&BTreeMap::new());
        b.push(&stored(&[Datum::Int32(1)])).unwrap();
        b.push(&stored(&[Datum::Int32(2)])).unwrap();
        let batch = b.finish().unwrap();
        assert_eq!((batch.num_rows(), batch.num_columns()), (2, 0));
    }

    #[test]
    fn a_corrupt_row_is_an_error() {
        let mut b = ColumnsBuilder::new(&[(0, DataType::Utf8)].into_iter().collect());
        let mut bytes = stored(&[Datum::Text("abc".into())]);
        bytes.truncate(bytes.len() - 1);
        assert!(b.push(&bytes).is_err());
    }
}

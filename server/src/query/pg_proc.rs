//! `pg_proc`'s array columns as arrays, as PostgreSQL types them: `proallargtypes` (`oid[]`),
//! `proargmodes` (`"char"[]`) and `proargnames` (`text[]`). datafusion-pg-catalog exports them
//! as the text of a list (`[3802, 25, 3802]`, `['i', 'o', 'o']`), which subscripts, `unnest`
//! and casts such as pgcli's `proallargtypes::regtype[]` cannot read. `proargtypes` stays the
//! text of an `oidvector` (`25 2276`), which is how PostgreSQL prints one.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{AsArray, ListBuilder, RecordBatch, StringBuilder};
use datafusion::arrow::array::{ArrayRef, Int32Builder};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::error::Result;

use super::catalog_rows::CatalogRows;
use super::pg_attribute::read_all;

/// (column, whether its elements are OIDs rather than text).
const ARRAYS: &[(&str, bool)] = &[
    ("proallargtypes", true),
    ("proargmodes", false),
    ("proargnames", false),
];

#[derive(Debug)]
pub(super) struct PgProcArrays {
    schema: SchemaRef,
    proc: Arc<dyn TableProvider>,
}

impl PgProcArrays {
    pub(super) fn new(proc: Arc<dyn TableProvider>) -> Self {
        let inner = proc.schema();
        let fields: Vec<Field> = inner
            .fields()
            .iter()
            .map(|f| match array_column(f) {
                Some(oids) => {
                    let element = if oids { DataType::Int32 } else { DataType::Utf8 };
                    Field::new(
                        f.name(),
                        DataType::List(Arc::new(Field::new("item", element, true))),
                        true,
                    )
                }
                None => f.as_ref().clone(),
            })
            .collect();
        let schema = Arc::new(Schema::new_with_metadata(fields, inner.metadata().clone()));
        PgProcArrays { schema, proc }
    }
}

/// Whether `f` is one of [`ARRAYS`] still exported as text (and if so, whether of OIDs).
fn array_column(f: &Field) -> Option<bool> {
    let (_, oids) = ARRAYS.iter().find(|(n, _)| n == f.name())?;
    (*f.data_type() == DataType::Utf8).then_some(*oids)
}

#[async_trait]
impl CatalogRows for PgProcArrays {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    async fn rows(&self, state: &dyn Session) -> Result<Vec<RecordBatch>> {
        let mut out = Vec::new();
        for b in read_all(&self.proc, state).await? {
            let mut columns = b.columns().to_vec();
            for (idx, field) in b.schema().fields().iter().enumerate() {
                if let Some(oids) = array_column(field) {
                    columns[idx] = to_list(b.column(idx).as_string::<i32>(), oids);
                }
            }
            out.push(RecordBatch::try_new(Arc::clone(&self.schema), columns)?);
        }
        Ok(out)
    }
}

fn to_list(texts: &datafusion::arrow::array::StringArray, oids: bool) -> ArrayRef {
    if oids {
        let mut list = ListBuilder::new(Int32Builder::new());
        for t in texts.iter() {
            match t {
                Some(t) => {
                    for e in elements(t) {
                        list.values().append_option(e.trim().parse::<i32>().ok());
                    }
                    list.append(true);
                }
                None => list.append(false),
            }
        }
        Arc::new(list.finish())
    } else {
        let mut list = ListBuilder::new(StringBuilder::new());
        for t in texts.iter() {
            match t {
                Some(t) => {
                    for e in elements(t) {
                        list.values().append_value(e);
                    }
                    list.append(true);
                }
                None => list.append(false),
            }
        }
        Arc::new(list.finish())
    }
}

/// The elements of a list's text: `[1, 2]`, `['a', "b'c"]` (quotes and backslash escapes as
/// Python writes them) or PostgreSQL's `{a,b}`.
fn elements(text: &str) -> Vec<String> {
    let inner = text.trim();
    let inner = inner
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .or_else(|| inner.strip_prefix('{').and_then(|t| t.strip_suffix('}')))
        .unwrap_or(inner);
    let mut out = Vec::new();
    let mut chars = inner.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let Some(&first) = chars.peek() else {
            break;
        };
        let mut item = String::new();
        if first == '\'' || first == '"' {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => item.extend(chars.next()),
                    c if c == first => break,
                    c => item.push(c),
                }
            }
            while chars.peek().is_some_and(|&c| c != ',') {
                chars.next();
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                item.push(c);
                chars.next();
            }
            item = item.trim().to_owned();
        }
        out.push(item);
        chars.next(); // the comma
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_texts() {
        assert_eq!(elements("[3802, 25, 3802]"), ["3802", "25", "3802"]);
        assert_eq!(elements("['i', 'o', 'o']"), ["i", "o", "o"]);
        assert_eq!(elements("['', \"it's\", 'a\\'b']"), ["", "it's", "a'b"]);
        assert_eq!(elements("{a,b}"), ["a", "b"]);
        assert!(elements("[]").is_empty());
    }
}

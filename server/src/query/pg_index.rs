//! Our tables' indexes and key constraints in the catalogs: `pg_index`, `pg_constraint`,
//! `pg_indexes`, index rows of `pg_class`, and `pg_get_indexdef` / `pg_get_constraintdef`.
//!
//! Every primary key, `UNIQUE` constraint and `CREATE INDEX` is an index (see the catalog's
//! `TableDef::all_indexes`); a primary key and a `UNIQUE` constraint are also a constraint.
//! Their OIDs come from their catalog ids, so they are the same in every statement: an index's
//! is [`INDEX_OID_BASE`] + its id, its constraint's [`CONSTRAINT_OID_BASE`] + its id. The
//! vector columns (`indkey`, `conkey`, …) are arrays, as clients `unnest` them.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{
    new_null_array, Array, ArrayRef, AsArray, BooleanArray, Int16Array, Int32Array, ListBuilder,
    PrimitiveBuilder, RecordBatch, StringArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::Result;
use datafusion::physical_plan::ExecutionPlan;
use freshet_catalog::{IndexKind, TableDef};

use super::pg_attribute::{column, oid_at, public_oid, read_all};
use super::catalog_rows::CatalogRows;
use crate::coord::engine::Engine;

/// An index's OID is this plus its catalog id.
pub(crate) const INDEX_OID_BASE: i64 = 1_000_000_000;
/// A key constraint's OID is this plus its index's catalog id.
pub(crate) const CONSTRAINT_OID_BASE: i64 = 1_500_000_000;
/// `pg_am`'s btree.
const BTREE_AM: i32 = 403;

/// One index of one of our tables, as the catalogs show it.
pub(crate) struct CatalogIndex {
    pub table: Arc<TableDef>,
    pub table_oid: i32,
    pub oid: i32,
    pub name: String,
    pub kind: IndexKind,
    pub columns: Vec<usize>,
}

impl CatalogIndex {
    fn constraint_oid(&self) -> Option<i32> {
        (self.kind != IndexKind::Plain)
            .then(|| (i64::from(self.oid) - INDEX_OID_BASE + CONSTRAINT_OID_BASE) as i32)
    }

    /// The default btree operator class of each key column (pg_opclass, PostgreSQL's OIDs).
    fn opclasses(&self) -> Vec<i32> {
        self.columns
            .iter()
            .map(|&c| {
                let ty = &self.table.columns[c].ty;
                if matches!(ty, freshet_common::SqlType::Array(_)) {
                    return 10000;
                }
                match ty.oid() {
                    16 => 10003,
                    17 => 10006,
                    20 => 3124,
                    21 => 1979,
                    23 => 1978,
                    25 | 1043 => 3126,
                    700 => 10012,
                    701 => 3123,
                    1042 => 10004,
                    1082 => 3122,
                    1083 => 10038,
                    1114 => 3128,
                    1184 => 3127,
                    1186 => 10022,
                    1700 => 3125,
                    2950 => 10065,
                    3802 => 10088,
                    _ => 0,
                }
            })
            .collect()
    }

    fn key(&self) -> Vec<i16> {
        self.columns.iter().map(|&c| c as i16 + 1).collect()
    }
}

/// Every index of our tables, with the tables' OIDs as `class` (datafusion-pg-catalog's
/// pg_class) gives them; and the OID of `public`.
pub(crate) async fn catalog_indexes(
    engine: &Engine,
    class: &Arc<dyn TableProvider>,
    namespace: &Arc<dyn TableProvider>,
    state: &dyn Session,
) -> Result<(Option<i64>, Vec<CatalogIndex>)> {
    let public = public_oid(namespace, state).await?;
    let classes = read_all(class, state).await?;
    Ok((public, indexes_of(engine, &classes, public)?))
}

/// Every index of our tables, given datafusion-pg-catalog's pg_class rows (the tables' OIDs)
/// and the OID of `public`.
pub(crate) fn indexes_of(
    engine: &Engine,
    classes: &[RecordBatch],
    public: Option<i64>,
) -> Result<Vec<CatalogIndex>> {
    let mut oids = HashMap::new();
    for b in classes {
        let (oid, name, ns) = (
            column(b, "oid")?,
            column(b, "relname")?.as_string::<i32>(),
            column(b, "relnamespace")?,
        );
        for i in 0..b.num_rows() {
            if public.is_some() && oid_at(ns, i) == public {
                if let Some(o) = oid_at(oid, i) {
                    oids.insert(name.value(i).to_owned(), o as i32);
                }
            }
        }
    }
    let mut out = Vec::new();
    for table in engine.catalog.tables() {
        let Some(&table_oid) = oids.get(&table.name) else {
            continue;
        };
        for ix in table.all_indexes() {
            out.push(CatalogIndex {
                table: Arc::clone(&table),
                table_oid,
                oid: (INDEX_OID_BASE + ix.id.0 as i64) as i32,
                name: ix.name.clone(),
                kind: ix.kind,
                columns: ix.columns.to_vec(),
            });
        }
    }
    Ok(out)
}

/// A scan of `batches`, as every catalog overlay answers.
pub(crate) fn memory_scan(
    batches: Vec<RecordBatch>,
    schema: SchemaRef,
    projection: Option<&Vec<usize>>,
    limit: Option<usize>,
) -> Result<Arc<dyn ExecutionPlan>> {
    let exec =
        MemorySourceConfig::try_new(&[batches], schema, projection.cloned())?.with_limit(limit);
    Ok(datafusion::datasource::source::DataSourceExec::from_data_source(exec))
}

/// `CREATE [UNIQUE] INDEX name ON public.t USING btree (a, b)`, as `pg_get_indexdef` gives it.
pub(crate) fn index_def(
    table: &TableDef,
    name: &str,
    kind: IndexKind,
    columns: &[usize],
) -> String {
    let unique = if kind == IndexKind::Plain {
        ""
    } else {
        "UNIQUE "
    };
    format!(
        "CREATE {unique}INDEX {} ON public.{} USING btree ({})",
        quote(name),
        quote(&table.name),
        column_list(table, columns)
    )
}

/// `PRIMARY KEY (a)` or `UNIQUE (a, b)`, as `pg_get_constraintdef` gives it.
pub(crate) fn constraint_def(table: &TableDef, kind: IndexKind, columns: &[usize]) -> String {
    let what = if kind == IndexKind::Primary {
        "PRIMARY KEY"
    } else {
        "UNIQUE"
    };
    format!("{what} ({})", column_list(table, columns))
}

fn column_list(table: &TableDef, columns: &[usize]) -> String {
    columns
        .iter()
        .map(|&c| quote(&table.columns[c].name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// An identifier as PostgreSQL prints it: quoted unless lower-case letters, digits and `_`.
fn quote(name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        name.to_owned()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

/// A row batch of `schema` with the given columns and every other column its type's zero
/// (or NULL where nullable).
pub(crate) fn rows_with(
    schema: &SchemaRef,
    n: usize,
    given: &HashMap<&str, ArrayRef>,
) -> Result<RecordBatch> {
    let mut cols = Vec::with_capacity(schema.fields().len());
    for f in schema.fields() {
        if let Some(a) = given.get(f.name().as_str()) {
            cols.push(datafusion::arrow::compute::cast(a, f.data_type())?);
        } else if f.is_nullable() {
            cols.push(new_null_array(f.data_type(), n));
        } else {
            let zero = match f.data_type() {
                DataType::Utf8 => ScalarValue::Utf8(Some(String::new())),
                DataType::Boolean => ScalarValue::Boolean(Some(false)),
                t => ScalarValue::new_zero(t)?,
            };
            cols.push(zero.to_array_of_size(n)?);
        }
    }
    Ok(RecordBatch::try_new(Arc::clone(schema), cols)?)
}

fn list_type(item: DataType) -> DataType {
    DataType::List(Arc::new(Field::new("item", item, true)))
}

/// pg_index's vector columns, marked for the wire: PostgreSQL prints an `int2vector` or
/// `oidvector` as `1 2` (pg_dump parses `indkey` so), while they stay lists for `unnest`.
fn as_vectors(schema: SchemaRef) -> SchemaRef {
    let kind = |name: &str| match name {
        "indkey" | "indoption" => Some("int2vector"),
        "indclass" | "indcollation" => Some("oidvector"),
        _ => None,
    };
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match kind(f.name()) {
            Some(k) => f.as_ref().clone().with_metadata(
                [(freshet_sql::types::PG_TYPE_METADATA_KEY.to_owned(), k.to_owned())].into(),
            ),
            None => f.as_ref().clone(),
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// `schema` with the named text columns (PostgreSQL vectors and arrays) as lists of `item`.
fn with_lists(schema: &SchemaRef, lists: &[(&str, DataType)]) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match lists.iter().find(|(n, _)| n == f.name()) {
            Some((_, item)) => Field::new(f.name(), list_type(item.clone()), true),
            None => f.as_ref().clone(),
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// A text vector (`1 2` or `{1,2}`) column as a list of integers.
fn parse_vectors(a: &ArrayRef, item: &DataType) -> Result<ArrayRef> {
    let numbers = |t: &str| -> Vec<i64> {
        t.trim_matches(|c| c == '{' || c == '}')
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter_map(|v| v.trim().parse().ok())
            .collect()
    };
    int_lists(a.as_string::<i32>().iter().map(|t| t.map(numbers)), item)
}

/// Lists of integers (NULL for `None`) as a list column of `item`s.
fn int_lists(rows: impl Iterator<Item = Option<Vec<i64>>>, item: &DataType) -> Result<ArrayRef> {
    let mut b = ListBuilder::new(PrimitiveBuilder::<Int64Type>::new());
    for r in rows {
        match r {
            Some(r) => {
                b.values().append_slice(&r);
                b.append(true);
            }
            None => b.append(false),
        }
    }
    let lists: ArrayRef = Arc::new(b.finish());
    Ok(datafusion::arrow::compute::cast(
        &lists,
        &list_type(item.clone()),
    )?)
}

/// `rows` as [`int_lists`] takes them.
fn wide<T: Copy + Into<i64>>(rows: &[Vec<T>]) -> impl Iterator<Item = Option<Vec<i64>>> + '_ {
    rows.iter()
        .map(|r| Some(r.iter().map(|&v| v.into()).collect()))
}

/// Which catalog relation a [`KeyCatalog`] answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Which {
    PgIndex,
    PgConstraint,
}

/// `pg_index` or `pg_constraint`: datafusion-pg-catalog's rows (its vectors as arrays), then
/// ours.
#[derive(Debug)]
pub(crate) struct KeyCatalog {
    which: Which,
    inner: Arc<dyn TableProvider>,
    class: Arc<dyn TableProvider>,
    namespace: Arc<dyn TableProvider>,
    engine: Arc<Engine>,
    schema: SchemaRef,
}

impl KeyCatalog {
    fn lists(which: Which) -> Vec<(&'static str, DataType)> {
        match which {
            Which::PgIndex => vec![
                ("indkey", DataType::Int16),
                ("indoption", DataType::Int16),
                ("indcollation", DataType::Int32),
                ("indclass", DataType::Int32),
            ],
            Which::PgConstraint => vec![("conkey", DataType::Int16), ("confkey", DataType::Int16)],
        }
    }

    pub(crate) fn new(
        which: Which,
        inner: Arc<dyn TableProvider>,
        class: Arc<dyn TableProvider>,
        namespace: Arc<dyn TableProvider>,
        engine: Arc<Engine>,
    ) -> Self {
        let schema = as_vectors(with_lists(&inner.schema(), &Self::lists(which)));
        Self {
            which,
            inner,
            class,
            namespace,
            engine,
            schema,
        }
    }

    fn ours(&self, public: Option<i64>, indexes: &[CatalogIndex]) -> Result<RecordBatch> {
        let rows: Vec<&CatalogIndex> = match self.which {
            Which::PgIndex => indexes.iter().collect(),
            Which::PgConstraint => indexes
                .iter()
                .filter(|i| i.kind != IndexKind::Plain)
                .collect(),
        };
        let n = rows.len();
        let keys: Vec<Vec<i16>> = rows.iter().map(|i| i.key()).collect();
        let zeros: Vec<Vec<i16>> = keys.iter().map(|k| vec![0; k.len()]).collect();
        let opclasses: Vec<Vec<i32>> = rows.iter().map(|i| i.opclasses()).collect();
        let ints = |f: &dyn Fn(&CatalogIndex) -> i32| -> ArrayRef {
            Arc::new(Int32Array::from(
                rows.iter().map(|i| f(i)).collect::<Vec<_>>(),
            ))
        };
        let bools = |f: &dyn Fn(&CatalogIndex) -> bool| -> ArrayRef {
            Arc::new(BooleanArray::from(
                rows.iter().map(|i| f(i)).collect::<Vec<_>>(),
            ))
        };
        let texts = |v: &str| -> ArrayRef { Arc::new(StringArray::from(vec![v; n])) };
        let mut given: HashMap<&str, ArrayRef> = HashMap::new();
        match self.which {
            Which::PgIndex => {
                let natts: ArrayRef = Arc::new(Int16Array::from(
                    keys.iter().map(|k| k.len() as i16).collect::<Vec<_>>(),
                ));
                given.insert("indexrelid", ints(&|i| i.oid));
                given.insert("indrelid", ints(&|i| i.table_oid));
                given.insert("indnatts", Arc::clone(&natts));
                given.insert("indnkeyatts", natts);
                given.insert("indisunique", bools(&|i| i.kind != IndexKind::Plain));
                given.insert("indisprimary", bools(&|i| i.kind == IndexKind::Primary));
                for always in ["indimmediate", "indisvalid", "indisready", "indislive"] {
                    given.insert(always, bools(&|_| true));
                }
                given.insert("indkey", int_lists(wide(&keys), &DataType::Int16)?);
                given.insert("indcollation", int_lists(wide(&zeros), &DataType::Int32)?);
                given.insert("indclass", int_lists(wide(&opclasses), &DataType::Int32)?);
                given.insert("indoption", int_lists(wide(&zeros), &DataType::Int16)?);
            }
            Which::PgConstraint => {
                given.insert("oid", ints(&|i| i.constraint_oid().unwrap_or(0)));
                given.insert(
                    "conname",
                    Arc::new(StringArray::from_iter_values(
                        rows.iter().map(|i| i.name.as_str()),
                    )),
                );
                given.insert("connamespace", ints(&|_| public.unwrap_or(0) as i32));
                given.insert(
                    "contype",
                    Arc::new(StringArray::from_iter_values(rows.iter().map(|i| {
                        if i.kind == IndexKind::Primary {
                            "p"
                        } else {
                            "u"
                        }
                    }))),
                );
                given.insert("convalidated", bools(&|_| true));
                given.insert("conislocal", bools(&|_| true));
                given.insert("connoinherit", bools(&|_| true));
                given.insert("conrelid", ints(&|i| i.table_oid));
                given.insert("conindid", ints(&|i| i.oid));
                for m in ["confupdtype", "confdeltype", "confmatchtype"] {
                    given.insert(m, texts(" "));
                }
                given.insert("conkey", int_lists(wide(&keys), &DataType::Int16)?);
            }
        }
        rows_with(&self.schema, n, &given)
    }
}

#[async_trait]
impl CatalogRows for KeyCatalog {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    async fn rows(&self, state: &dyn Session) -> Result<Vec<RecordBatch>> {
        let lists = Self::lists(self.which);
        let mut out = Vec::new();
        for b in read_all(&self.inner, state).await? {
            let mut cols = b.columns().to_vec();
            for (name, item) in &lists {
                let idx = b.schema().index_of(name)?;
                cols[idx] = parse_vectors(&cols[idx], item)?;
            }
            out.push(RecordBatch::try_new(Arc::clone(&self.schema), cols)?);
        }
        let (public, indexes) =
            catalog_indexes(&self.engine, &self.class, &self.namespace, state).await?;
        out.push(self.ours(public, &indexes)?);
        Ok(out)
    }
}

/// `pg_indexes`: one row per index of our tables.
#[derive(Debug)]
pub(crate) struct PgIndexes {
    class: Arc<dyn TableProvider>,
    namespace: Arc<dyn TableProvider>,
    engine: Arc<Engine>,
}

impl PgIndexes {
    pub(crate) fn new(
        class: Arc<dyn TableProvider>,
        namespace: Arc<dyn TableProvider>,
        engine: Arc<Engine>,
    ) -> Self {
        Self {
            class,
            namespace,
            engine,
        }
    }

    fn schema_ref() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("schemaname", DataType::Utf8, false),
            Field::new("tablename", DataType::Utf8, false),
            Field::new("indexname", DataType::Utf8, false),
            Field::new("tablespace", DataType::Utf8, true),
            Field::new("indexdef", DataType::Utf8, false),
        ]))
    }
}

#[async_trait]
impl CatalogRows for PgIndexes {
    fn schema(&self) -> SchemaRef {
        Self::schema_ref()
    }

    async fn rows(&self, state: &dyn Session) -> Result<Vec<RecordBatch>> {
        let (_, indexes) =
            catalog_indexes(&self.engine, &self.class, &self.namespace, state).await?;
        let text = |f: &dyn Fn(&CatalogIndex) -> String| -> ArrayRef {
            Arc::new(StringArray::from_iter_values(indexes.iter().map(|i| f(i))))
        };
        let batch = RecordBatch::try_new(
            Self::schema_ref(),
            vec![
                text(&|_| freshet_catalog::DEFAULT_SCHEMA.to_owned()),
                text(&|i| i.table.name.clone()),
                text(&|i| i.name.clone()),
                new_null_array(&DataType::Utf8, indexes.len()),
                text(&|i| index_def(&i.table, &i.name, i.kind, &i.columns)),
            ],
        )?;
        Ok(vec![batch])
    }
}

/// A pg_class row of a relation we list ourselves (an index, a sequence).
pub(crate) struct ClassRow<'a> {
    pub oid: i32,
    pub name: &'a str,
    pub owner: i32,
    pub natts: i16,
}

/// pg_class rows of relations of `kind` (access method `am`) in `public`.
pub(crate) fn relation_rows(
    schema: &SchemaRef,
    public: Option<i64>,
    kind: &str,
    am: i32,
    rows: &[ClassRow<'_>],
) -> Result<RecordBatch> {
    let n = rows.len();
    let ints = |f: &dyn Fn(&ClassRow<'_>) -> i32| -> ArrayRef {
        Arc::new(Int32Array::from(rows.iter().map(f).collect::<Vec<_>>()))
    };
    let text = |v: &str| -> ArrayRef { Arc::new(StringArray::from(vec![v; n])) };
    let mut given: HashMap<&str, ArrayRef> = HashMap::new();
    given.insert("oid", ints(&|r| r.oid));
    given.insert("relfilenode", ints(&|r| r.oid));
    given.insert("relname", Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.name))));
    given.insert("relnamespace", ints(&|_| public.unwrap_or(0) as i32));
    given.insert("relowner", ints(&|r| r.owner));
    given.insert("relam", ints(&|_| am));
    given.insert("relkind", text(kind));
    given.insert("relpersistence", text("p"));
    given.insert("relreplident", text("n"));
    given.insert(
        "relnatts",
        Arc::new(Int16Array::from(rows.iter().map(|r| r.natts).collect::<Vec<_>>())),
    );
    given.insert("relispopulated", Arc::new(BooleanArray::from(vec![true; n])));
    rows_with(schema, n, &given)
}

/// pg_class rows of our indexes (relkind `i`, btree).
pub(crate) fn class_rows(
    schema: &SchemaRef,
    public: Option<i64>,
    indexes: &[CatalogIndex],
    owner: &dyn Fn(&TableDef) -> i32,
) -> Result<RecordBatch> {
    let rows: Vec<ClassRow<'_>> = indexes
        .iter()
        .map(|i| ClassRow {
            oid: i.oid,
            name: &i.name,
            owner: owner(&i.table),
            natts: i.columns.len() as i16,
        })
        .collect();
    relation_rows(schema, public, "i", BTREE_AM, &rows)
}

/// The text of index or constraint `oid` when it is one of ours.
pub(crate) fn definition_of(engine: &Engine, oid: i64) -> Option<String> {
    let (id, constraint) = if oid >= CONSTRAINT_OID_BASE {
        (oid - CONSTRAINT_OID_BASE, true)
    } else if oid >= INDEX_OID_BASE {
        (oid - INDEX_OID_BASE, false)
    } else {
        return None;
    };
    for table in engine.catalog.tables() {
        for ix in table.all_indexes() {
            if ix.id.0 as i64 != id {
                continue;
            }
            return Some(if constraint {
                if ix.kind == IndexKind::Plain {
                    return None;
                }
                constraint_def(&table, ix.kind, ix.columns)
            } else {
                index_def(&table, &ix.name, ix.kind, ix.columns)
            });
        }
    }
    None
}

/// The name of column `n` (1-based) of index `oid`, as `pg_get_indexdef(oid, n, …)` gives it.
pub(crate) fn index_column(engine: &Engine, oid: i64, n: i64) -> Option<String> {
    let id = oid.checked_sub(INDEX_OID_BASE)?;
    for table in engine.catalog.tables() {
        for ix in table.all_indexes() {
            if ix.id.0 as i64 == id {
                let c = *ix.columns.get(usize::try_from(n - 1).ok()?)?;
                return Some(quote(&table.columns[c].name));
            }
        }
    }
    None
}

/// `pg_get_indexdef(oid [, column, pretty])` and `pg_get_constraintdef(oid [, pretty])` over
/// our indexes and key constraints (datafusion-pg-catalog's answer an empty string for all).
#[derive(Debug)]
struct DefinitionOf {
    name: &'static str,
    signature: datafusion::logical_expr::Signature,
    engine: Arc<Engine>,
}

impl PartialEq for DefinitionOf {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for DefinitionOf {}

impl std::hash::Hash for DefinitionOf {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

impl datafusion::logical_expr::ScalarUDFImpl for DefinitionOf {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &datafusion::logical_expr::Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(
        &self,
        args: datafusion::logical_expr::ScalarFunctionArgs,
    ) -> Result<datafusion::logical_expr::ColumnarValue> {
        use datafusion::arrow::datatypes::Int64Type as I64;
        use datafusion::logical_expr::ColumnarValue;
        let scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let as_i64 = |a: &ArrayRef| datafusion::arrow::compute::cast(a, &DataType::Int64);
        let oids = as_i64(&arrays[0])?;
        let oids = oids.as_primitive::<I64>();
        let column = match (self.name, arrays.get(1)) {
            ("pg_get_indexdef", Some(c)) => Some(as_i64(c)?),
            _ => None,
        };
        let column = column.as_ref().map(|c| c.as_primitive::<I64>());
        let out: StringArray = (0..oids.len())
            .map(|i| {
                if oids.is_null(i) {
                    return None;
                }
                let oid = oids.value(i);
                match column.map(|c| c.value(i)) {
                    Some(n) if n > 0 => index_column(&self.engine, oid, n),
                    _ => definition_of(&self.engine, oid).or_else(|| {
                        // Not ours: what datafusion-pg-catalog answered.
                        (self.name == "pg_get_constraintdef").then(String::new)
                    }),
                }
            })
            .collect();
        Ok(if scalar {
            ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?)
        } else {
            ColumnarValue::Array(Arc::new(out))
        })
    }
}

/// Registers [`DefinitionOf`]'s functions on `ctx`.
pub(crate) fn register_functions(ctx: &datafusion::prelude::SessionContext, engine: &Arc<Engine>) {
    use datafusion::logical_expr::{ScalarUDF, Signature, TypeSignature, Volatility};
    for name in ["pg_get_indexdef", "pg_get_constraintdef"] {
        let signature = Signature::one_of(
            vec![
                TypeSignature::Any(1),
                TypeSignature::Any(2),
                TypeSignature::Any(3),
            ],
            Volatility::Stable,
        );
        ctx.register_udf(ScalarUDF::new_from_impl(DefinitionOf {
            name,
            signature,
            engine: Arc::clone(engine),
        }));
    }
}

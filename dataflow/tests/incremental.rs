//! Property tests, one per operator: a view maintained incrementally over random batches of
//! inserts, deletes and updates (a delete and an insert of the row with one column changed)
//! equals, after every batch, the same query computed
//! from scratch by DataFusion over the tables' current contents.
//!
//! Each test lowers its query exactly as the server does (optimize, lower, `storable`), commits
//! the epochs with the server's [`EpochRunner`] against a real RocksDB store, and reads the view
//! back with [`read_view_rows`]. Seeds are fixed, so a failure reproduces; the message names
//! the seed and the step.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use freshet_common::{Datum, TableId};
use freshet_dataflow::runner::{Durability, EpochRunner, FoldReason};
use freshet_dataflow::ops::TableKey;
use freshet_dataflow::{
    read_view_rows, storable, Dataflows, EpochChanges, Lowering, MaterializedView, Relations,
};
use freshet_sql::df_convert::{batch_to_rows, rows_to_full_batch};
use freshet_state::{StateConfig, Store};

/// A small deterministic generator (xorshift64*), so runs reproduce without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// An int in 0..n, NULL one time in `null_one_in`.
    fn int(&mut self, n: i32, null_one_in: u64) -> Datum {
        if self.below(null_one_in) == 0 {
            Datum::Null
        } else {
            Datum::Int32(self.below(n as u64) as i32)
        }
    }
}

const WORDS: &[&str] = &["ant", "bee", "cat", "dog", "eel", "fox", "gnu"];

struct Table {
    id: TableId,
    name: &'static str,
    schema: SchemaRef,
    rows: Vec<Vec<Datum>>,
    next_key: i32,
    /// The columns it is stored by (see `store_rows`).
    primary_key: Vec<usize>,
    /// An index (its id) on one column, as `CREATE INDEX` keeps it.
    index: Option<(TableId, usize)>,
}

impl Table {
    fn new(id: u64, name: &'static str, cols: &[(&str, DataType)]) -> Table {
        let fields: Vec<Field> = cols
            .iter()
            .map(|(n, t)| Field::new(*n, t.clone(), true))
            .collect();
        Table {
            id: TableId(id),
            name,
            schema: Arc::new(Schema::new(fields)),
            rows: vec![],
            next_key: 0,
            primary_key: vec![0],
            index: None,
        }
    }

    fn random_row(&mut self, rng: &mut Rng) -> Vec<Datum> {
        self.next_key += 1;
        let mut row = vec![Datum::Int32(self.next_key)];
        for f in self.schema.fields().iter().skip(1) {
            row.push(match f.data_type() {
                DataType::Utf8 if rng.below(6) == 0 => Datum::Null,
                DataType::Utf8 => {
                    Datum::Text(WORDS[rng.below(WORDS.len() as u64) as usize].to_owned())
                }
                _ => rng.int(8, 6),
            });
        }
        row
    }

    fn provider(&self) -> Arc<MemTable> {
        let batch = rows_to_full_batch(&self.rows, &self.schema).expect("batch");
        Arc::new(MemTable::try_new(Arc::clone(&self.schema), vec![vec![batch]]).expect("memtable"))
    }
}

struct Tables(Vec<Table>);

impl Relations for Tables {
    fn resolve(&self, name: &str) -> Option<(TableId, SchemaRef)> {
        self.0
            .iter()
            .find(|t| t.name == name)
            .map(|t| (t.id, Arc::clone(&t.schema)))
    }

    /// Tables are stored by `k` (unique: see `Table::random_row`), `c` by `(g, k)`; `b` has
    /// an index on `g`.
    fn stored_keys(&self, relation: TableId) -> Vec<TableKey> {
        let Some(t) = self.0.iter().find(|t| t.id == relation) else {
            return Vec::new();
        };
        let mut keys = vec![TableKey {
            index: None,
            columns: t.primary_key.clone(),
        }];
        keys.extend(t.index.map(|(id, column)| TableKey {
            index: Some(id),
            columns: vec![column],
        }));
        keys
    }
}

/// Writes `rows` of `table` into `batch` as the server stores table rows (by primary key),
/// or deletes them: joins read sides that are tables joined on their key from the store.
fn store_rows(batch: &mut freshet_state::WriteBatch, table: &Table, rows: &[Vec<Datum>], put: bool) {
    for row in rows {
        let mut key = freshet_state::table_prefix(table.id);
        let pk: Vec<Datum> = table.primary_key.iter().map(|&c| row[c].clone()).collect();
        freshet_state::key_codec::encode_key(&pk, &mut key);
        // The index entry: the value's key, then the row's key after the table prefix.
        let entry = table.index.map(|(id, column)| {
            let mut entry = freshet_state::table_prefix(id);
            freshet_state::key_codec::encode_key(&row[column..=column], &mut entry);
            entry.extend_from_slice(&key[9..]);
            entry
        });
        if put {
            let mut value = Vec::new();
            freshet_state::row_codec::encode_row(row, &mut value);
            if let Some(entry) = entry {
                batch.put(entry, &key);
            }
            batch.put(key, value);
        } else {
            if let Some(entry) = entry {
                batch.delete(entry);
            }
            batch.delete(key);
        }
    }
}

fn tables() -> Tables {
    Tables(vec![
        Table::new(
            1,
            "a",
            &[
                ("k", DataType::Int32),
                ("g", DataType::Int32),
                ("v", DataType::Int32),
                ("s", DataType::Utf8),
            ],
        ),
        {
            let mut b = Table::new(
                2,
                "b",
                &[
                    ("k", DataType::Int32),
                    ("g", DataType::Int32),
                    ("w", DataType::Int32),
                ],
            );
            b.index = Some((TableId(10), 1));
            b
        },
        {
            let mut c = Table::new(3, "c", &[("k", DataType::Int32), ("g", DataType::Int32)]);
            c.primary_key = vec![1, 0];
            c
        },
    ])
}

fn context(tables: &Tables) -> SessionContext {
    let ctx = SessionContext::new();
    for t in &tables.0 {
        ctx.register_table(t.name, t.provider()).expect("register");
    }
    ctx
}

/// A row as compared: floats rounded (sums in another order differ in the last bits).
fn key(row: &[Datum]) -> String {
    let cells: Vec<String> = row
        .iter()
        .map(|d| match d {
            Datum::Float64(f) => format!("{:.6e}", if f.abs() < 1e-9 { 0.0 } else { *f }),
            Datum::Float32(f) => format!("{:.4e}", f),
            other => format!("{other:?}"),
        })
        .collect();
    cells.join("|")
}

fn multiset(rows: impl IntoIterator<Item = (Vec<Datum>, i64)>) -> BTreeMap<String, i64> {
    let mut m = BTreeMap::new();
    for (r, n) in rows {
        *m.entry(key(&r)).or_insert(0) += n;
    }
    m.retain(|_, n| *n != 0);
    m
}

async fn recompute(tables: &Tables, sql: &str) -> BTreeMap<String, i64> {
    let ctx = context(tables);
    let batches = ctx
        .sql(sql)
        .await
        .expect("plan")
        .collect()
        .await
        .expect("run");
    let mut rows = Vec::new();
    for b in batches {
        rows.extend(batch_to_rows(&b).expect("rows").into_iter().map(|r| (r, 1)));
    }
    multiset(rows)
}

/// Where a root aggregate keeps its state; MIN/MAX keep counted values with `Own` (as views
/// created before occurrences do) and occurrences otherwise (as new views do).
#[derive(Clone, Copy, PartialEq, Debug)]
enum Layout {
    /// Under its own keys.
    Own,
    /// Inside the view's contents, written every epoch.
    InContents,
    /// Inside the view's contents, through a contents log folded only before some of the
    /// comparisons, with the cache lost now and then (a failed epoch, a restart).
    Logged,
}

/// Maintains `sql` over `steps` random batches for several seeds, checking every step (with a
/// contents log, every third); with each [`Layout`] of a root aggregate's state.
async fn check(sql: &str) {
    for seed in [1u64, 7, 2026, 31337] {
        for layout in [Layout::Own, Layout::InContents, Layout::Logged] {
            check_seed(sql, seed, 25, layout).await;
        }
    }
}

async fn check_seed(sql: &str, seed: u64, steps: usize, layout: Layout) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), &StateConfig::for_test()).expect("store");
    let mut tables = tables();
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    // Some rows exist before the view: the first epoch is its backfill.
    for t in &mut tables.0 {
        for _ in 0..6 {
            let row = t.random_row(&mut rng);
            t.rows.push(row);
        }
    }
    let ctx = context(&tables);
    let plan = ctx.state().create_logical_plan(sql).await.expect("plan");
    let optimized = ctx.state().optimize(&plan).expect("optimize");
    let view_id = TableId(100);
    let state = ctx.state();
    let mut lowering = Lowering::new(view_id, state.execution_props(), &tables)
        .with_occurrences(layout != Layout::Own)
        .with_table_reads(true, None)
        .with_semi_join_reduction(true)
        .with_semi_join_pushdown(true);
    let optimized = lowering.rewrite(optimized).expect("rewrite");
    let root = lowering.lower(&optimized).and_then(storable);
    let root = root.unwrap_or_else(|e| panic!("lowering {sql}: {e}"));
    let view = Arc::new(
        MaterializedView::new(view_id, "v".into(), root.schema(), root)
            .with_aggregate_in_contents(layout != Layout::Own)
            .with_contents_log(layout == Layout::Logged),
    );
    let flows = Arc::new(Dataflows::default());
    flows.insert(Arc::clone(&view));
    // No budget: the logs are folded where the test says.
    let runner = EpochRunner::start(store.clone(), Arc::clone(&flows), 0, usize::MAX)
        .expect("epoch runner");
    let fold = || runner.fold(FoldReason::ForReader).expect("fold");
    {
        let mut rows = freshet_state::WriteBatch::default();
        for t in &tables.0 {
            store_rows(&mut rows, t, &t.rows, true);
        }
        store.write(rows).expect("table rows");
        let snapshot = store.snapshot();
        let mut batch = freshet_state::WriteBatch::default();
        let mut changes = EpochChanges::default();
        for t in &tables.0 {
            changes.add(t.id, t.rows.clone(), 1);
        }
        // The backfill, as the server runs it but in tiny steps: each step's writes go to
        // the store before the next step reads them.
        let mut flush = |b: freshet_state::WriteBatch| {
            store.write(b).map_err(freshet_dataflow::epoch::state_err)?;
            Ok(store.snapshot())
        };
        let steps =
            freshet_dataflow::backfill::Backfill::new(&view, &snapshot, &mut batch, &mut flush)
                .with_step_bytes(200)
                .run(changes, &[])
                .expect("backfill");
        assert!(steps > 1, "{sql}: the backfill took one step");
        store.write(batch).expect("commit");
    }
    compare(&store, &tables, &view, sql, seed, "backfill").await;
    for step in 0..steps {
        let mut changes = EpochChanges::default();
        let mut batch = freshet_state::WriteBatch::default();
        for t in &mut tables.0 {
            // a mix of inserts and deletes; sometimes none for this table
            let (ins, del) = (rng.below(4), rng.below(4).min(t.rows.len() as u64));
            // Runs of steps without deletes, so MIN/MAX arrivals get staged in a contents
            // log across several epochs (with a log) before a retraction needs them.
            let del = if step % 8 < 4 { 0 } else { del };
            let mut deleted = Vec::new();
            let mut inserted = Vec::new();
            for _ in 0..del {
                let i = rng.below(t.rows.len() as u64) as usize;
                let old = t.rows.swap_remove(i);
                // Half the deleted rows come back with one column changed, as an UPDATE
                // writes them: a scan that does not read the column sees the two cancel.
                let c = rng.below(old.len() as u64) as usize;
                if rng.below(2) == 0 && !t.primary_key.contains(&c) {
                    let mut new = old.clone();
                    new[c] = t.random_row(&mut rng).swap_remove(c);
                    inserted.push(new);
                }
                deleted.push(old);
            }
            for _ in 0..ins {
                inserted.push(t.random_row(&mut rng));
            }
            t.rows.extend(inserted.iter().cloned());
            store_rows(&mut batch, t, &deleted, false);
            store_rows(&mut batch, t, &inserted, true);
            changes.add(t.id, deleted, -1);
            changes.add(t.id, inserted, 1);
        }
        if flows.must_fold() {
            fold();
        }
        if flows.log_generation().is_multiple_of(2) {
            // Every log folded: a preview of the epoch must give what it will commit.
            let snapshot = store.snapshot();
            let preview = flows
                .preview(view_id, changes.clone(), &snapshot)
                .unwrap_or_else(|e| panic!("{sql} seed {seed} step {step} preview: {e}"));
            let mut rows = read_view_rows(&snapshot, &view).expect("read view");
            rows.extend(preview);
            check_rows(
                multiset(rows),
                &tables,
                sql,
                seed,
                &format!("{step} preview"),
            )
            .await;
        }
        runner
            .commit_here(batch, changes, Durability::Synced)
            .unwrap_or_else(|e| panic!("{sql} seed {seed} step {step}: {e}"));
        if layout == Layout::Logged {
            if step % 7 == 3 {
                // The cache forgets the groups only the log holds: the next epoch folds first.
                flows.forget_cached();
            }
            if step % 3 != 2 && step + 1 < steps {
                continue;
            }
            fold();
        }
        compare(&store, &tables, &view, sql, seed, &step.to_string()).await;
    }
}

async fn compare(
    store: &Store,
    tables: &Tables,
    view: &MaterializedView,
    sql: &str,
    seed: u64,
    step: &str,
) {
    let got = multiset(read_view_rows(&store.snapshot(), view).expect("read view"));
    check_rows(got, tables, sql, seed, step).await;
}

/// `got` equals what the view's query computes from scratch over `tables`.
async fn check_rows(got: BTreeMap<String, i64>, tables: &Tables, sql: &str, seed: u64, step: &str) {
    let want = recompute(tables, sql).await;
    if got != want {
        let only_got: HashMap<_, _> = got
            .iter()
            .filter(|(k, v)| want.get(*k) != Some(v))
            .collect();
        let only_want: HashMap<_, _> = want
            .iter()
            .filter(|(k, v)| got.get(*k) != Some(v))
            .collect();
        panic!("{sql}\nseed {seed} step {step}\nincremental only: {only_got:?}\nrecompute only: {only_want:?}");
    }
}

macro_rules! incremental {
    ($($name:ident: $sql:expr,)*) => {
        $(
            #[tokio::test]
            async fn $name() {
                check($sql).await;
            }
        )*
    };
}

incremental! {
    filter: "SELECT k, v FROM a WHERE v > 3 OR s = 'cat'",
    project: "SELECT k, v * 2 + g AS e, upper(s) AS u, coalesce(v, -1) AS c FROM a",
    count_sum: "SELECT g, count(*) AS c, count(v) AS cv, sum(v) AS sv FROM a GROUP BY g",
    min_max: "SELECT g, min(v) AS mn, max(v) AS mx, min(s) AS ms, max(s) AS xs FROM a GROUP BY g",
    avg: "SELECT g, avg(v) AS av FROM a GROUP BY g",
    count_distinct: "SELECT g, count(DISTINCT v) AS d FROM a GROUP BY g",
    bool_aggs: "SELECT g, bool_and(v > 2) AS ba, bool_or(v > 5) AS bo FROM a GROUP BY g",
    string_agg: "SELECT g, string_agg(s, ',' ORDER BY s DESC, k) AS ss FROM a GROUP BY g",
    array_agg: "SELECT g, array_agg(v ORDER BY k) AS av FROM a GROUP BY g",
    global_aggregate: "SELECT count(*) AS c, sum(v) AS s, max(s) AS m FROM a WHERE v > 6",
    having: "SELECT g, count(*) AS c FROM a GROUP BY g HAVING count(*) > 1",
    distinct: "SELECT DISTINCT g, v FROM a",
    distinct_on: "SELECT DISTINCT ON (g) g, k, v FROM a ORDER BY g, v DESC NULLS LAST, k",
    inner_join: "SELECT a.k, b.k AS bk, a.v, b.w FROM a JOIN b ON a.g = b.g",
    inner_join_residual: "SELECT a.k, b.k AS bk FROM a JOIN b ON a.g = b.g AND a.v < b.w",
    left_join: "SELECT a.k, b.w FROM a LEFT JOIN b ON a.g = b.g AND b.w > 2",
    right_join: "SELECT a.k, b.k AS bk FROM a RIGHT JOIN b ON a.g = b.g",
    full_join: "SELECT a.k, b.k AS bk FROM a FULL JOIN b ON a.g = b.g AND a.v <> b.w",
    cross_join: "SELECT a.k, b.k AS bk FROM a, b WHERE a.v > b.w + 4",
    semi_join: "SELECT k FROM a WHERE g IN (SELECT g FROM b WHERE w > 3)",
    anti_join: "SELECT k FROM a WHERE NOT EXISTS (SELECT 1 FROM b WHERE b.g = a.g AND b.w > a.v)",
    not_in: "SELECT k, v FROM a WHERE v NOT IN (SELECT w FROM b WHERE g > 2)",
    scalar_subquery: "SELECT k, (SELECT max(w) FROM b) AS mw FROM a WHERE v >= (SELECT min(w) FROM b)",
    correlated_subquery: "SELECT k, (SELECT count(*) FROM b WHERE b.g = a.g) AS n FROM a",
    union_all: "SELECT g FROM a UNION ALL SELECT w FROM b",
    union_distinct: "SELECT g FROM a UNION SELECT g FROM b",
    except: "SELECT g FROM a EXCEPT SELECT g FROM b",
    intersect: "SELECT v FROM a INTERSECT SELECT w FROM b",
    top_n: "SELECT k, v FROM a ORDER BY v DESC NULLS LAST, k LIMIT 4",
    top_n_offset: "SELECT k, s FROM a ORDER BY s NULLS FIRST, k LIMIT 3 OFFSET 2",
    row_number_per_group: "SELECT k, g FROM (SELECT k, g, row_number() OVER (PARTITION BY g ORDER BY v, k) AS rn FROM a) q WHERE rn <= 2",
    rank_per_group: "SELECT g, v, r FROM (SELECT g, v, rank() OVER (PARTITION BY g ORDER BY v) AS r FROM a) q WHERE r <= 2",
    window_functions: "SELECT k, sum(v) OVER (PARTITION BY g ORDER BY k) AS rs, lag(v) OVER (PARTITION BY g ORDER BY k) AS pv, count(*) OVER (PARTITION BY g) AS c FROM a",
    aggregate_of_join: "SELECT b.g, count(*) AS c, sum(a.v) AS s FROM a JOIN b ON a.g = b.g GROUP BY b.g",
    cte_join_aggregates: "WITH x AS (SELECT g, sum(v) AS s FROM a GROUP BY g), y AS (SELECT g, max(w) AS m FROM b GROUP BY g) SELECT x.g, x.s, y.m FROM x LEFT JOIN y ON x.g = y.g",
    // Joins on the tables' key `k`: those sides are read from the tables (join_tables.rs).
    key_join: "SELECT a.k, a.v, b.w FROM a JOIN b ON a.k = b.k",
    key_join_filtered: "SELECT a.k, b.k AS bk, b.w FROM a JOIN b ON b.k = a.g WHERE b.w > 2 AND a.v < 6",
    key_join_projected: "SELECT a.k, x.e FROM a JOIN (SELECT k, w * 2 + g AS e FROM b WHERE g <> 3) x ON x.k = a.v",
    key_left_join: "SELECT a.k, b.w FROM a LEFT JOIN b ON a.v = b.k AND b.w > 1",
    key_right_join: "SELECT a.s, b.k FROM a RIGHT JOIN b ON a.k = b.g",
    key_semi_join: "SELECT k FROM a WHERE v IN (SELECT k FROM b WHERE w > 3)",
    key_anti_join: "SELECT k FROM a WHERE NOT EXISTS (SELECT 1 FROM b WHERE b.k = a.g AND b.w > a.v)",
    key_self_join: "SELECT x.k, y.s FROM a x JOIN a y ON x.g = y.k",
    key_join_aggregate: "SELECT b.g, count(*) AS c, sum(a.v) AS s FROM a JOIN b ON a.k = b.k GROUP BY b.g",
    key_join_chain: "SELECT a.k, b.w, x.s FROM a JOIN b ON a.k = b.k JOIN a x ON x.k = b.g",
    // `c` is stored by (g, k): joined on g, several rows per key.
    key_prefix_join: "SELECT a.k, a.v, c.k AS ck FROM a JOIN c ON a.k = c.g",
    key_prefix_join_filtered: "SELECT c.k, a.s FROM c JOIN a ON c.g = a.k WHERE a.v > 2",
    key_prefix_left_join: "SELECT a.k, c.k AS ck FROM a LEFT JOIN c ON a.v = c.g",
    // Semi joins read a left side that is a table joined on its key from the table.
    key_semi_join_left: "SELECT k, w FROM b WHERE g IN (SELECT v FROM a WHERE s = 'cat')",
    key_semi_join_both: "SELECT k, g FROM c WHERE g IN (SELECT k FROM a WHERE v > 4)",
    // Aggregates joined on a group column, computed for the keys the join can match only
    // (lower/reduce.rs; `reductions_apply` below checks that each is).
    reduced_aggregate: REDUCED[0],
    reduced_correlated: REDUCED[1],
    reduced_having: REDUCED[2],
    reduced_through_join: REDUCED[3],
    reduced_left_join: REDUCED[4],
    reduced_two_keys: REDUCED[5],
    // Semi joins testing a condition on groups, placed below the inner joins of their left
    // side (lower/semi_push.rs; `semi_joins_pushed` below checks that each is).
    pushed_semi_join: PUSHED[0],
    pushed_to_the_right: PUSHED[1],
    pushed_through_filter: PUSHED[2],
    filtering_join: PUSHED[3],
    filtering_join_pushed: PUSHED[4],
    // Both sides of a semi join read from their tables, its filtered left side fed.
    semi_join_both_tables: BOTH_TABLES,
}

/// A semi join of a filtered table with a table that is not filtered on its key: both read
/// from their tables.
const BOTH_TABLES: &str =
    "SELECT k, g FROM c WHERE k < 5 AND g IN (SELECT g FROM b WHERE w > 1 AND k > 2)";

const PUSHED: [&str; 5] = [
    "SELECT a.k, a.v, b.w FROM a JOIN b ON a.g = b.g WHERE a.k IN (SELECT g FROM c GROUP BY g HAVING count(*) > 1)",
    "SELECT a.k, b.k AS bk, b.w FROM a JOIN b ON a.g = b.g WHERE b.k IN (SELECT g FROM c GROUP BY g HAVING sum(k) > 3)",
    "SELECT a.k, sum(b.w) AS sw, count(*) AS n FROM a JOIN b ON a.g = b.g JOIN c ON c.g = a.k WHERE a.v > 1 AND b.w <> c.k AND a.k IN (SELECT g FROM b GROUP BY g HAVING count(*) >= 2) GROUP BY a.k",
    // Inner joins with a filtered table on its key, none of whose columns is read: semi joins.
    "SELECT b.k, b.w FROM b JOIN a ON b.g = a.k WHERE a.v > 2",
    "SELECT c.k, b.w FROM c JOIN b ON c.g = b.g JOIN a ON b.k = a.k WHERE a.s = 'cat'",
];

/// A plan rewrite of `Lowering` (`push_semi_joins`, `reduce_aggregates`).
type Rewrite = fn(
    &Lowering<'_>,
    datafusion::logical_expr::LogicalPlan,
) -> datafusion::error::Result<(datafusion::logical_expr::LogicalPlan, bool)>;

/// Each of `queries` is changed by `rewrite` and then has a semi join reading its left side
/// from the table; each of `unchanged` is left as it is. Returns the EXPLAIN of `also`,
/// lowered the same way.
async fn rewrites_apply(
    rewrite: Rewrite,
    queries: &[&str],
    unchanged: &[&str],
    also: Option<&str>,
) -> Option<String> {
    let tables = tables();
    let ctx = context(&tables);
    let lowered = |sql: String| {
        let (ctx, tables) = (&ctx, &tables);
        async move {
            let plan = ctx.state().create_logical_plan(&sql).await.expect("plan");
            let optimized = ctx.state().optimize(&plan).expect("optimize");
            let state = ctx.state();
            let mut lowering = Lowering::new(TableId(100), state.execution_props(), tables)
                .with_table_reads(true, None)
                .with_semi_join_reduction(true)
                .with_semi_join_pushdown(true);
            let (rewritten, changed) = rewrite(&lowering, optimized).expect("rewrite");
            let root = lowering.lower(&rewritten).expect("lower");
            let explain = MaterializedView::new(TableId(100), "v".into(), root.schema(), root).explain();
            (changed, explain)
        }
    };
    for sql in queries {
        let (changed, explain) = lowered(sql.to_string()).await;
        assert!(changed, "{sql}: not rewritten\n{explain}");
        assert!(
            explain.lines().any(|l| l.contains("kind=LeftSemi") && l.contains("left=table")),
            "{sql}: no semi join reading its left side from the table\n{explain}"
        );
    }
    for sql in unchanged {
        let (changed, explain) = lowered(sql.to_string()).await;
        assert!(!changed, "{sql}: rewritten\n{explain}");
    }
    match also {
        Some(sql) => Some(lowered(sql.to_string()).await.1),
        None => None,
    }
}

/// Each of [`PUSHED`] is planned with its semi join below the inner join (a join that only
/// filters made one first), reading its left side from the table; a semi join that is not
/// selective is left above, and joins whose table is read, unfiltered or not joined on its
/// key stay joins.
#[tokio::test]
async fn semi_joins_pushed() {
    let explain = rewrites_apply(
        |l, plan| l.push_semi_joins(plan),
        &PUSHED,
        &[
            "SELECT a.k, b.w FROM a JOIN b ON a.g = b.g WHERE a.k IN (SELECT g FROM c)",
            // The table's columns are read; it is not filtered; not joined on its key.
            "SELECT b.k, a.v FROM b JOIN a ON b.g = a.k WHERE a.v > 2",
            "SELECT b.k, b.w FROM b JOIN a ON b.g = a.k",
            "SELECT a.k, b.w FROM a JOIN b ON a.g = b.g WHERE b.w > 2",
        ],
        Some(BOTH_TABLES),
    )
    .await
    .expect("explain");
    // A filtered left side and a right side not filtered on its key: both from tables.
    assert!(
        explain
            .lines()
            .any(|l| l.contains("kind=LeftSemi") && l.contains("left=table") && l.contains("right=table")),
        "{BOTH_TABLES}: a side of its semi join kept as state\n{explain}"
    );
}

const REDUCED: [&str; 6] = [
    "SELECT a.k, a.v, t.sw, t.n FROM a JOIN (SELECT g, sum(w) AS sw, count(*) AS n FROM b GROUP BY g) t ON a.g = t.g WHERE a.v < 4",
    "SELECT a.k FROM a WHERE a.s = 'cat' AND a.v < (SELECT avg(b.w) FROM b WHERE b.g = a.g)",
    "SELECT c.k, t.n FROM c JOIN (SELECT g, count(*) AS n FROM b GROUP BY g HAVING count(*) > 1) t ON c.g = t.g WHERE c.k < 5",
    "SELECT x.k, t.m FROM (SELECT a.k, b.g FROM a JOIN b ON a.g = b.g WHERE a.v = 2) x JOIN (SELECT g, max(k) AS m FROM c GROUP BY g) t ON x.g = t.g",
    "SELECT a.k, t.c FROM a LEFT JOIN (SELECT g, count(*) AS c FROM c GROUP BY g) t ON a.k = t.g WHERE a.v > 3",
    "SELECT a.k, t.n FROM a JOIN (SELECT g, k, count(*) AS n FROM c GROUP BY g, k) t ON a.k = t.g AND a.v = t.k WHERE a.s <> 'dog'",
];

/// Each of [`REDUCED`] is planned with its aggregate's input restricted by a semi join, which
/// reads its left side from the table; a query without a filtered side to take keys from is
/// left as it is.
#[tokio::test]
async fn reductions_apply() {
    rewrites_apply(
        |l, plan| l.reduce_aggregates(plan),
        &REDUCED,
        &["SELECT a.k, t.n FROM a JOIN (SELECT g, count(*) AS n FROM b GROUP BY g) t ON a.g = t.g"],
        None,
    )
    .await;
}

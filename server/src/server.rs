//! The listener: opens the store, builds the template DataFusion context, accepts connections.

use std::sync::Arc;

use anyhow::Context;
use datafusion::execution::config::SessionConfig;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::SessionStateBuilder;
use datafusion::prelude::SessionContext;
use datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use freshet_catalog::{Catalog, DEFAULT_SCHEMA};
use freshet_state::{StateConfig, Store};
use pgwire::api::ConnectionManager;
use tokio::net::TcpListener;

use crate::config::ServerOpts;
use crate::coord::engine::Engine;
use crate::pg::ConnectionHandlers;
use crate::query::{
    FreshetCatalogProvider, InternalSchema, PgCatalogOverlay, DATABASE_NAME, INTERNAL_SCHEMA,
};
use crate::session::Session;
use datafusion::catalog::CatalogProvider;

/// A running server's shared parts.
pub struct Server {
    engine: Arc<Engine>,
    template: SessionContext,
    /// Query memory of all sessions together (`--query-memory-total-mb`).
    query_budget: Arc<crate::memory::ServerBudget>,
    manager: Arc<ConnectionManager>,
    /// Largest protocol message a client may send, in bytes.
    max_message: usize,
    /// Large messages being received, all connections together.
    message_budget: Arc<crate::pg::limit::Budget>,
    /// Connections served at once (`--max-connections`), and how many are.
    max_connections: usize,
    connections: Arc<std::sync::atomic::AtomicUsize>,
    /// TLS for clients that ask for it (`--tls-cert`, `--tls-key`).
    tls: Option<pgwire::tokio::TlsAcceptor>,
    tls_required_remote: bool,
    auth: Arc<crate::pg::auth::Auth>,
}

/// One connection counted in [`Server::connections`] while it lives.
struct Counted(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

impl Server {
    /// Opens the store and catalog in `opts.data_dir`.
    pub async fn open(opts: &ServerOpts) -> anyhow::Result<Server> {
        std::fs::create_dir_all(&opts.data_dir)
            .with_context(|| format!("creating data dir {}", opts.data_dir.display()))?;
        let config = StateConfig {
            sync_commits: opts.sync_commits,
            cache_bytes: opts.rocksdb_cache_bytes(),
            contents_log_bytes: opts.contents_log_mb << 20,
            ..StateConfig::default()
        };
        freshet_dataflow::ops::cache::set_budget(opts.operator_cache_bytes());
        let store = Store::open(&opts.data_dir.join("state"), &config)
            .context("opening the state store")?;
        let catalog = Arc::new(Catalog::open(store.clone()).context("loading the catalog")?);
        let auth_mode = opts.auth_mode()?;
        crate::access::bootstrap(&catalog, &opts.superuser, opts.superuser_password.as_deref())
            .context("creating the bootstrap superuser")?;
        if auth_mode == crate::pg::auth::AuthMode::Scram
            && !catalog.roles().iter().any(|r| r.login && r.password.is_some())
        {
            anyhow::bail!(
                "--auth scram, but no role can log in with a password: set FRESHET_SUPERUSER_PASSWORD \
                 (the password of --superuser {})",
                opts.superuser
            );
        }
        let auth = crate::pg::auth::Auth::new(auth_mode, Arc::clone(&catalog), opts.max_auth_failures);
        let policy = freshet_connector_kafka::PropertyPolicy {
            allow_any: opts.kafka_allow_any_property,
            files_dir: opts.kafka_files_dir.clone(),
        };
        let engine = Engine::new(
            store,
            catalog,
            opts.contents_log_mb << 20,
            policy,
            opts.subscriber_queue_rows,
            opts.retain_changes,
        )
        .context("opening the engine")?;
        let query_budget = crate::memory::ServerBudget::new(opts.query_memory_total_mb << 20);
        let template = template_context(&engine, opts, &query_budget)?;
        engine.definer.set(crate::coord::engine::Definer {
            state: template.state(),
            inline_views: crate::query::plain_view::inline,
        });
        crate::coord::transient::delete_leftovers(&engine)
            .context("deleting the state of an earlier run's subscriptions")?;
        crate::coord::views::load_all(&engine, &template.state())
            .await
            .context("rebuilding materialized views")?;
        engine.finish_startup();
        // Sinks before sources: they pin the changelog entries the next epochs write.
        crate::coord::sinks::start_all(&engine).context("starting sinks")?;
        crate::coord::sources::start_all(&engine).context("starting sources")?;
        crate::coord::timers::start(&engine);
        Ok(Server {
            engine,
            template,
            query_budget,
            manager: Arc::new(ConnectionManager::new()),
            max_message: opts.max_message_mb << 20,
            message_budget: crate::pg::limit::Budget::new(opts.max_buffered_messages_mb << 20),
            max_connections: opts.max_connections,
            connections: Arc::default(),
            tls: match (&opts.tls_cert, &opts.tls_key) {
                (Some(cert), Some(key)) => Some(crate::pg::tls::acceptor(cert, key)?),
                _ => None,
            },
            tls_required_remote: opts.tls_required_remote,
            auth,
        })
    }

    /// Accepts connections until `shutdown` resolves.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> anyhow::Result<()> {
        let this = Arc::new(self);
        tokio::pin!(shutdown);
        let mut last_accept_log: Option<std::time::Instant> = None;
        let mut accept_errors = 0u64;
        loop {
            let (socket, peer) = tokio::select! {
                _ = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: back off so the loop does not
                        // spin, and log at most once a second.
                        accept_errors += 1;
                        if last_accept_log.is_none_or(|t| t.elapsed() >= std::time::Duration::from_secs(1)) {
                            tracing::warn!(error = %e, failures = accept_errors, "accept failed");
                            last_accept_log = Some(std::time::Instant::now());
                            accept_errors = 0;
                        }
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let server = Arc::clone(&this);
            let counted = Counted(Arc::clone(&this.connections));
            // Past the limit a client still gets PostgreSQL's answer (53300), then is closed.
            let admitted = this
                .connections
                .fetch_add(1, std::sync::atomic::Ordering::AcqRel)
                < this.max_connections;
            tokio::spawn(async move {
                let _counted = counted;
                tracing::debug!(%peer, "connection accepted");
                let (notes_tx, notes) = tokio::sync::mpsc::unbounded_channel();
                let session = Arc::new(Session::new(
                    Arc::clone(&server.engine),
                    &server.template,
                    &server.query_budget,
                    None,
                    None,
                    Some(notes_tx),
                ));
                session.activity().set_client(peer);
                let handlers = ConnectionHandlers::new(
                    session,
                    Arc::clone(&server.manager),
                    Arc::clone(&server.auth),
                );
                if let Err(e) = crate::pg::serve(
                    socket,
                    handlers,
                    notes,
                    crate::pg::Terms {
                        max_message: server.max_message,
                        budget: Arc::clone(&server.message_budget),
                        admitted,
                        tls: server.tls.clone(),
                        tls_required_remote: server.tls_required_remote,
                    },
                )
                .await {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
            });
        }
        tracing::info!("shutting down");
        Ok(())
    }
}

/// The DataFusion context every session starts from: our catalog, pg_catalog, our functions,
/// PostgreSQL's arithmetic, and a memory limit per statement with spilling into the data
/// directory.
fn template_context(
    engine: &Arc<Engine>,
    opts: &ServerOpts,
    query_budget: &Arc<crate::memory::ServerBudget>,
) -> anyhow::Result<SessionContext> {
    let config = SessionConfig::new()
        .with_default_catalog_and_schema(DATABASE_NAME, DEFAULT_SCHEMA)
        .with_create_default_catalog_and_schema(false)
        // Ours (DataFusion's plus table_privileges) is registered in the catalog below.
        .with_information_schema(false)
        .with_target_partitions(2);
    let spill = opts.data_dir.join("spill");
    // Spill files of an earlier run are garbage.
    let _ = std::fs::remove_dir_all(&spill);
    std::fs::create_dir_all(&spill)
        .with_context(|| format!("creating {}", spill.display()))?;
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_limit(opts.query_memory_mb << 20, 1.0)
        .with_disk_manager_builder(
            DiskManagerBuilder::default().with_mode(DiskManagerMode::Directories(vec![spill])),
        )
        .build_arc()?;
    let state = SessionStateBuilder::new()
        .with_config(config)
        .with_runtime_env(runtime)
        .with_default_features()
        // Untyped array literals take their type from the context before type coercion.
        .with_analyzer_rules(
            std::iter::once(freshet_sql::untyped_array::rule())
                .chain(datafusion::optimizer::Analyzer::new().rules)
                .collect(),
        )
        // Text casts first: constant folding would read `'today'::date` with Arrow's cast.
        .with_analyzer_rule(Arc::new(freshet_sql::text_casts::TextCasts))
        .with_analyzer_rule(Arc::new(freshet_sql::vector_subscript::VectorSubscripts))
        .with_analyzer_rule(Arc::new(freshet_sql::arith::FoldConstants))
        .with_analyzer_rule(Arc::new(freshet_sql::scalar_subquery::ScalarSubqueryRows))
        .with_analyzer_rule(Arc::new(freshet_sql::subquery_oids::PlainOidSubqueries))
        .with_physical_optimizer_rule(Arc::new(freshet_sql::arith::PgArithmetic))
        .build();
    let ctx = SessionContext::new_with_state(state);
    let catalog = Arc::new(FreshetCatalogProvider::new(Arc::clone(engine)));
    ctx.register_catalog(DATABASE_NAME, Arc::clone(&catalog) as _);
    datafusion_pg_catalog::setup_pg_catalog(&ctx, DATABASE_NAME, EmptyContextProvider)
        .map_err(|e| anyhow::anyhow!("setting up pg_catalog: {e}"))?;
    {
        let state = ctx.state_ref();
        let existing = state.read().clone();
        // `typname[0]` (a subscript of a name) before DataFusion's list subscripts.
        // jsonb operators over text before DataFusion's (which refuses `->` and `?`), and
        // interval × number, which DataFusion does not plan.
        let planners = [
            Arc::new(freshet_sql::name_subscript::NameSubscript) as _,
            Arc::new(freshet_sql::jsonb_functions::JsonbOperators) as _,
            Arc::new(freshet_sql::interval_arith::IntervalArithmetic) as _,
        ]
        .into_iter()
        .chain(existing.expr_planners().iter().cloned())
            .collect();
        *state.write() = SessionStateBuilder::new_from_existing(existing)
            .with_type_planner(Arc::new(freshet_sql::type_planner::PgTypePlanner::default()))
            .with_expr_planners(planners)
            .build();
    }
    // Our declared column types in pg_attribute (numeric(p,s), varchar(n), jsonb, arrays).
    let pg_catalog = catalog
        .schema("pg_catalog")
        .context("pg_catalog not registered")?;
    catalog.register_schema(
        "pg_catalog",
        Arc::new(PgCatalogOverlay::new(pg_catalog, Arc::clone(engine))),
    )?;
    let information_schema = datafusion::catalog::information_schema::InformationSchemaProvider::new(
        Arc::clone(ctx.state().catalog_list()),
    );
    catalog.register_schema(
        "information_schema",
        Arc::new(crate::query::InformationSchemaOverlay::new(
            Arc::new(information_schema),
            Arc::clone(&engine.catalog),
        )),
    )?;
    catalog.register_schema(
        INTERNAL_SCHEMA,
        Arc::new(InternalSchema::new(Arc::clone(engine), Arc::clone(query_budget))),
    )?;
    crate::functions::register(&ctx, opts.query_memory_mb << 20);
    crate::query::pg_index::register_functions(&ctx, engine);
    crate::functions::register_with_catalog(&ctx, &engine.catalog);
    crate::functions::sizes::register(&ctx, engine);
    Ok(ctx)
}

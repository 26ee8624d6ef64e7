//! Storage conformance: one suite per storage contract, written once against
//! the trait and run against every implementation of it.
//!
//! Why a suite per contract and not per backend: the next backend
//! (PostgreSQL) must behave exactly like the embedded one, and the only
//! statement of "exactly" that cannot drift is one set of cases both run.
//!
//! Layout: `<contract>.rs` holds the cases as plain `async fn case(store: …)`
//! functions taking a fresh, empty store, plus one `conformance!` line that
//! names, per backend, how to open a fresh store. Adding a backend is adding
//! one `name = opener` entry to each of those lines; no case changes.

/// Generates one `#[tokio::test]` per (backend, case): a module per backend,
/// a test per case, each on a fresh store. The opener is an expression that
/// evaluates to a future of `(store, guard)`; the guard (a temporary
/// directory, a database name) lives as long as the test.
///
/// ```ignore
/// conformance!([sqlite = open_sqlite()] (create_then_get, list_is_sorted));
/// ```
macro_rules! conformance {
    ([$($backend:ident = $open:expr),+ $(,)?] $cases:tt) => {
        $( conformance!(@backend $backend ($open) $cases); )+
    };
    (@backend $backend:ident ($open:expr) ($($case:ident),+ $(,)?)) => {
        mod $backend {
            #[allow(unused_imports, reason = "the opener may name items of the suite")]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let (store, _guard) = $open.await;
                    super::$case(store).await;
                }
            )+
        }
    };
}

// One line per contract suite, e.g. `mod metadata;`.
mod change_feed;
mod code_blobs;
mod dead_letters;
mod fire_ledger;
mod gateway;
mod helpers;
mod invocation_queue;
mod keys;
mod leases;
mod logs;
mod mappings;
mod metadata;
mod object_store;
mod queue_catalog;
mod queue_data;
mod schedules;
mod topics;
mod workflows;

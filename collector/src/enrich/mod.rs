//! Enrichment from the platform's catalogs: the Backstage catalog that says who owns what (`backstage`), and
//! MLflow's models and runs, written back with their GPU cost (`mlflow`). Owners are resolved at ingest by the
//! pure rules of `gpucost_rules::attribute`, so that every cost line keeps the owner in force when its GPU time
//! was used.

pub mod backstage;
pub mod mlflow;

/// The owners configuration, replaced whole when the catalog is synced again.
pub type SharedOwners = std::sync::Arc<std::sync::RwLock<gpucost_rules::attribute::Owners>>;

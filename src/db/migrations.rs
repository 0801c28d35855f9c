//! The migrator; the migrations themselves live in the top-level `migrations/` folder, each
//! written once for SQLite and PostgreSQL (sea-query builds both dialects).

use sea_orm_migration::prelude::*;

#[path = "../../migrations/m0001_jobs_and_labellings.rs"]
mod m0001_jobs_and_labellings;
#[path = "../../migrations/m0002_labelling_position.rs"]
mod m0002_labelling_position;
#[path = "../../migrations/m0003_labelling_entropy_row.rs"]
mod m0003_labelling_entropy_row;
#[path = "../../migrations/m0004_cluster_jobs.rs"]
mod m0004_cluster_jobs;
#[path = "../../migrations/m0005_accounts.rs"]
mod m0005_accounts;
#[path = "../../migrations/m0006_models.rs"]
mod m0006_models;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m0001_jobs_and_labellings::Migration),
            Box::new(m0002_labelling_position::Migration),
            Box::new(m0003_labelling_entropy_row::Migration),
            Box::new(m0004_cluster_jobs::Migration),
            Box::new(m0005_accounts::Migration),
            Box::new(m0006_models::Migration),
        ]
    }
}

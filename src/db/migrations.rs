//! The migrator; the migrations themselves live in the top-level `migrations/` folder, each
//! written once for SQLite and PostgreSQL (sea-query builds both dialects).

use sea_orm_migration::prelude::*;

#[path = "../../migrations/m0001_jobs_and_labellings.rs"]
mod m0001_jobs_and_labellings;
#[path = "../../migrations/m0002_labelling_position.rs"]
mod m0002_labelling_position;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m0001_jobs_and_labellings::Migration),
            Box::new(m0002_labelling_position::Migration),
        ]
    }
}

//! Cluster jobs (SPEC §8): the cluster a job runs on, SLURM's id for it, the node it ran on
//! and its exit code. A job with a cluster is never claimed by this host's workers.

use sea_orm_migration::prelude::*;

#[derive(DeriveIden)]
enum Jobs {
    Table,
    Phase,
    Cluster,
    ExternalId,
    Node,
    ExitCode,
}

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite's ALTER TABLE adds one at a time.
        for column in [
            ColumnDef::new(Jobs::Cluster)
                .string_len(64)
                .null()
                .to_owned(),
            ColumnDef::new(Jobs::ExternalId)
                .string_len(64)
                .null()
                .to_owned(),
            ColumnDef::new(Jobs::Node).text().null().to_owned(),
            ColumnDef::new(Jobs::ExitCode).integer().null().to_owned(),
        ] {
            m.alter_table(
                Table::alter()
                    .table(Jobs::Table)
                    .add_column(column)
                    .to_owned(),
            )
            .await?;
        }
        m.create_index(
            Index::create()
                .name("jobs_cluster_phase")
                .table(Jobs::Table)
                .col(Jobs::Cluster)
                .col(Jobs::Phase)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(
            Index::drop()
                .name("jobs_cluster_phase")
                .table(Jobs::Table)
                .to_owned(),
        )
        .await?;
        for column in [Jobs::ExitCode, Jobs::Node, Jobs::ExternalId, Jobs::Cluster] {
            m.alter_table(
                Table::alter()
                    .table(Jobs::Table)
                    .drop_column(column)
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }
}

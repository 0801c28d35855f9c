//! A labelling keeps its prediction's entropy and its spectrum's row in the iteration's
//! `result.h5`, so that the workspace pages a survey's candidates from the table and reads a
//! spectrum's preprocessed flux on demand, without a file of every candidate.

use sea_orm_migration::prelude::*;

#[derive(DeriveIden)]
enum Labellings {
    Table,
    JobId,
    SpectrumSet,
    Position,
    Entropy,
    ResultRow,
}

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite's ALTER TABLE adds one at a time.
        m.alter_table(
            Table::alter()
                .table(Labellings::Table)
                .add_column(ColumnDef::new(Labellings::Entropy).double().null())
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(Labellings::Table)
                .add_column(ColumnDef::new(Labellings::ResultRow).big_integer().null())
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("labellings_job_set_position")
                .table(Labellings::Table)
                .col(Labellings::JobId)
                .col(Labellings::SpectrumSet)
                .col(Labellings::Position)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(
            Index::drop()
                .name("labellings_job_set_position")
                .table(Labellings::Table)
                .to_owned(),
        )
        .await?;
        for column in [Labellings::ResultRow, Labellings::Entropy] {
            m.alter_table(
                Table::alter()
                    .table(Labellings::Table)
                    .drop_column(column)
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }
}

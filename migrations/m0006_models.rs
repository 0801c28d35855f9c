//! The model registry (SPEC §12): one row per model an ACTIVE_ML iteration saved; the weights
//! stay in the job's folder as `model.safetensors`.

use sea_orm_migration::prelude::*;

#[derive(DeriveIden)]
enum Models {
    Table,
    ModelId,
    Name,
    JobId,
    Iteration,
    Alias,
    Notes,
    ChainId,
    Classes,
    CandidateClasses,
    WaveStart,
    WaveEnd,
    WaveCount,
    TrainingSize,
    Metrics,
    PerfEstimate,
    CreatedBy,
    CreatedAt,
}

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Models::Table)
                .col(
                    ColumnDef::new(Models::ModelId)
                        .uuid()
                        .not_null()
                        .primary_key(),
                )
                .col(ColumnDef::new(Models::Name).string_len(256).not_null())
                .col(ColumnDef::new(Models::JobId).uuid().not_null().unique_key())
                .col(ColumnDef::new(Models::Iteration).integer().not_null())
                .col(
                    ColumnDef::new(Models::Alias)
                        .string_len(64)
                        .null()
                        .unique_key(),
                )
                .col(ColumnDef::new(Models::Notes).text().null())
                .col(ColumnDef::new(Models::ChainId).uuid().not_null())
                .col(ColumnDef::new(Models::Classes).json().not_null())
                .col(ColumnDef::new(Models::CandidateClasses).json().not_null())
                .col(ColumnDef::new(Models::WaveStart).double().not_null())
                .col(ColumnDef::new(Models::WaveEnd).double().not_null())
                .col(ColumnDef::new(Models::WaveCount).integer().not_null())
                .col(
                    ColumnDef::new(Models::TrainingSize)
                        .big_integer()
                        .not_null(),
                )
                .col(ColumnDef::new(Models::Metrics).json().not_null())
                .col(ColumnDef::new(Models::PerfEstimate).double().null())
                .col(ColumnDef::new(Models::CreatedBy).string_len(64).null())
                .col(
                    ColumnDef::new(Models::CreatedAt)
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("models_created_at")
                .table(Models::Table)
                .col(Models::CreatedAt)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(Models::Table).to_owned())
            .await
    }
}

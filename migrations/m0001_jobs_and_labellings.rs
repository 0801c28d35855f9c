//! Jobs (SPEC §2) and labellings (SPEC §5, cascading with their job).

use sea_orm_migration::prelude::*;

#[derive(DeriveIden)]
enum Jobs {
    Table,
    JobId,
    Type,
    Label,
    Description,
    Phase,
    DirPath,
    Config,
    Error,
    ParentJobId,
    CreatedAt,
    StartedAt,
    EndedAt,
    ExecutionDuration,
    Attempt,
    WorkerId,
    HeartbeatMs,
}

#[derive(DeriveIden)]
enum Labellings {
    Table,
    LabellingId,
    JobId,
    SpectrumFilename,
    SpectrumSet,
    SequenceIteration,
    ModelPrediction,
    UserLabel,
    UserComment,
}

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Jobs::Table)
                .col(ColumnDef::new(Jobs::JobId).uuid().not_null().primary_key())
                .col(ColumnDef::new(Jobs::Type).string_len(64).not_null())
                .col(ColumnDef::new(Jobs::Label).string_len(50).not_null())
                .col(ColumnDef::new(Jobs::Description).string_len(255).null())
                .col(ColumnDef::new(Jobs::Phase).string_len(16).not_null())
                .col(ColumnDef::new(Jobs::DirPath).text().not_null())
                .col(ColumnDef::new(Jobs::Config).json().null())
                .col(ColumnDef::new(Jobs::Error).text().null())
                .col(ColumnDef::new(Jobs::ParentJobId).uuid().null())
                .col(
                    ColumnDef::new(Jobs::CreatedAt)
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(Jobs::StartedAt)
                        .timestamp_with_time_zone()
                        .null(),
                )
                .col(
                    ColumnDef::new(Jobs::EndedAt)
                        .timestamp_with_time_zone()
                        .null(),
                )
                .col(ColumnDef::new(Jobs::ExecutionDuration).double().null())
                .col(
                    ColumnDef::new(Jobs::Attempt)
                        .integer()
                        .not_null()
                        .default(0),
                )
                .col(ColumnDef::new(Jobs::WorkerId).text().null())
                .col(ColumnDef::new(Jobs::HeartbeatMs).big_integer().null())
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("jobs_phase_created")
                .table(Jobs::Table)
                .col(Jobs::Phase)
                .col(Jobs::CreatedAt)
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("jobs_created")
                .table(Jobs::Table)
                .col(Jobs::CreatedAt)
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Labellings::Table)
                .col(
                    ColumnDef::new(Labellings::LabellingId)
                        .uuid()
                        .not_null()
                        .primary_key(),
                )
                .col(ColumnDef::new(Labellings::JobId).uuid().not_null())
                .col(
                    ColumnDef::new(Labellings::SpectrumFilename)
                        .text()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(Labellings::SpectrumSet)
                        .string_len(32)
                        .not_null(),
                )
                .col(
                    ColumnDef::new(Labellings::SequenceIteration)
                        .integer()
                        .not_null(),
                )
                .col(ColumnDef::new(Labellings::ModelPrediction).text().null())
                .col(ColumnDef::new(Labellings::UserLabel).text().null())
                .col(ColumnDef::new(Labellings::UserComment).text().null())
                .foreign_key(
                    ForeignKey::create()
                        .name("labellings_job_fk")
                        .from(Labellings::Table, Labellings::JobId)
                        .to(Jobs::Table, Jobs::JobId)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("labellings_job_id")
                .table(Labellings::Table)
                .col(Labellings::JobId)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(Labellings::Table).to_owned())
            .await?;
        m.drop_table(Table::drop().table(Jobs::Table).to_owned())
            .await
    }
}

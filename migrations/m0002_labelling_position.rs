//! Labellings keep the order their job gave them (the oracle batch, most uncertain first).

use sea_orm_migration::prelude::*;

#[derive(DeriveIden)]
enum Labellings {
    Table,
    Position,
}

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(Labellings::Table)
                .add_column(
                    ColumnDef::new(Labellings::Position)
                        .integer()
                        .not_null()
                        .default(0),
                )
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(Labellings::Table)
                .drop_column(Labellings::Position)
                .to_owned(),
        )
        .await
    }
}

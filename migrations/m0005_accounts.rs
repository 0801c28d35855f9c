//! Accounts (SPEC §11): users with Argon2id hashes and a role, API tokens and page sessions
//! stored as SHA-256 hashes of their secrets, the audit trail, and who made each job and
//! labelling.

use sea_orm_migration::prelude::*;

#[derive(DeriveIden)]
enum Users {
    Table,
    Name,
    PasswordHash,
    Role,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Tokens {
    Table,
    Id,
    UserName,
    Name,
    Hash,
    Scope,
    CreatedAt,
    ExpiresAt,
    LastUsedAt,
    RevokedAt,
}

#[derive(DeriveIden)]
enum Sessions {
    Table,
    Hash,
    UserName,
    CreatedAt,
    LastSeenAt,
}

#[derive(DeriveIden)]
enum Audit {
    Table,
    Id,
    At,
    UserName,
    Action,
    Object,
    Address,
}

#[derive(DeriveIden)]
enum Jobs {
    Table,
    CreatedBy,
}

#[derive(DeriveIden)]
enum Labellings {
    Table,
    LabelledBy,
}

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Users::Table)
                .col(
                    ColumnDef::new(Users::Name)
                        .string_len(64)
                        .not_null()
                        .primary_key(),
                )
                .col(ColumnDef::new(Users::PasswordHash).text().null())
                .col(ColumnDef::new(Users::Role).string_len(16).not_null())
                .col(
                    ColumnDef::new(Users::CreatedAt)
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Tokens::Table)
                .col(ColumnDef::new(Tokens::Id).uuid().not_null().primary_key())
                .col(ColumnDef::new(Tokens::UserName).string_len(64).not_null())
                .col(ColumnDef::new(Tokens::Name).string_len(64).not_null())
                .col(
                    ColumnDef::new(Tokens::Hash)
                        .string_len(64)
                        .not_null()
                        .unique_key(),
                )
                .col(ColumnDef::new(Tokens::Scope).string_len(8).not_null())
                .col(
                    ColumnDef::new(Tokens::CreatedAt)
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(Tokens::ExpiresAt)
                        .timestamp_with_time_zone()
                        .null(),
                )
                .col(
                    ColumnDef::new(Tokens::LastUsedAt)
                        .timestamp_with_time_zone()
                        .null(),
                )
                .col(
                    ColumnDef::new(Tokens::RevokedAt)
                        .timestamp_with_time_zone()
                        .null(),
                )
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Sessions::Table)
                .col(
                    ColumnDef::new(Sessions::Hash)
                        .string_len(64)
                        .not_null()
                        .primary_key(),
                )
                .col(ColumnDef::new(Sessions::UserName).string_len(64).not_null())
                .col(
                    ColumnDef::new(Sessions::CreatedAt)
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(Sessions::LastSeenAt)
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Audit::Table)
                .col(
                    ColumnDef::new(Audit::Id)
                        .big_integer()
                        .not_null()
                        .auto_increment()
                        .primary_key(),
                )
                .col(
                    ColumnDef::new(Audit::At)
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                .col(ColumnDef::new(Audit::UserName).string_len(64).null())
                .col(ColumnDef::new(Audit::Action).string_len(32).not_null())
                .col(ColumnDef::new(Audit::Object).text().null())
                .col(ColumnDef::new(Audit::Address).string_len(64).null())
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(Jobs::Table)
                .add_column(ColumnDef::new(Jobs::CreatedBy).string_len(64).null())
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(Labellings::Table)
                .add_column(ColumnDef::new(Labellings::LabelledBy).string_len(64).null())
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(Labellings::Table)
                .drop_column(Labellings::LabelledBy)
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(Jobs::Table)
                .drop_column(Jobs::CreatedBy)
                .to_owned(),
        )
        .await?;
        for t in [
            Audit::Table.into_iden(),
            Sessions::Table.into_iden(),
            Tokens::Table.into_iden(),
            Users::Table.into_iden(),
        ] {
            m.drop_table(Table::drop().table(t).to_owned()).await?;
        }
        Ok(())
    }
}

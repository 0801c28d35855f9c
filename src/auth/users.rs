//! Users and tokens in the database: what `mljm users …`, the login and the token endpoints
//! share.

use chrono::Utc;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder,
    sea_query::Expr,
};
use uuid::Uuid;

use super::{
    Role, digest,
    entities::{session, token, user},
    hash_password,
};
use crate::error::ApiError;

/// 1–64 letters, digits, `_`, `-`, `.`, `@`.
pub fn check_name(name: &str) -> Result<(), ApiError> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.@".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "name",
            format!("{name:?} is not a user name (1–64 letters, digits, '_', '-', '.', '@')"),
        ))
    }
}

pub fn check_password(password: &str) -> Result<(), ApiError> {
    let n = password.chars().count();
    if !(8..=1024).contains(&n) {
        return Err(ApiError::invalid(
            "password",
            format!("a password has 8 to 1024 characters (this one {n})"),
        ));
    }
    Ok(())
}

pub fn role(s: &str) -> Result<Role, ApiError> {
    Role::parse(s)
        .ok_or_else(|| ApiError::invalid("role", format!("{s:?} is not admin, member or viewer")))
}

pub async fn add(
    db: &DatabaseConnection,
    name: &str,
    role: Role,
    password: &str,
) -> Result<(), ApiError> {
    check_name(name)?;
    check_password(password)?;
    if user::Entity::find_by_id(name.to_string())
        .one(db)
        .await?
        .is_some()
    {
        return Err(ApiError::Conflict(format!("user {name} exists already")));
    }
    user::Entity::insert(user::ActiveModel {
        name: Set(name.to_string()),
        password_hash: Set(Some(hash_password(password)?)),
        role: Set(role.as_str().to_string()),
        created_at: Set(Utc::now()),
    })
    .exec(db)
    .await?;
    Ok(())
}

/// The user a trusted proxy names, made with `default_role` the first time.
pub async fn proxy_user(
    db: &DatabaseConnection,
    name: &str,
    default_role: &str,
) -> Result<user::Model, ApiError> {
    if let Some(u) = user::Entity::find_by_id(name.to_string()).one(db).await? {
        return Ok(u);
    }
    let row = user::Model {
        name: name.to_string(),
        password_hash: None,
        role: default_role.to_string(),
        created_at: Utc::now(),
    };
    // Two first requests at once: the second insert loses, and both read the one row.
    let _ = user::Entity::insert(user::ActiveModel {
        name: Set(row.name.clone()),
        password_hash: Set(None),
        role: Set(row.role.clone()),
        created_at: Set(row.created_at),
    })
    .exec(db)
    .await;
    Ok(user::Entity::find_by_id(name.to_string())
        .one(db)
        .await?
        .unwrap_or(row))
}

fn missing(name: &str) -> ApiError {
    ApiError::NotFound(format!("no user {name}"))
}

pub async fn set_password(
    db: &DatabaseConnection,
    name: &str,
    password: &str,
) -> Result<(), ApiError> {
    check_password(password)?;
    let n = user::Entity::update_many()
        .filter(user::Column::Name.eq(name))
        .col_expr(
            user::Column::PasswordHash,
            Expr::value(hash_password(password)?),
        )
        .exec(db)
        .await?
        .rows_affected;
    if n == 0 {
        return Err(missing(name));
    }
    // A new password ends the sessions the old one opened.
    session::Entity::delete_many()
        .filter(session::Column::UserName.eq(name))
        .exec(db)
        .await?;
    Ok(())
}

pub async fn set_role(db: &DatabaseConnection, name: &str, role: Role) -> Result<(), ApiError> {
    let n = user::Entity::update_many()
        .filter(user::Column::Name.eq(name))
        .col_expr(user::Column::Role, Expr::value(role.as_str()))
        .exec(db)
        .await?
        .rows_affected;
    if n == 0 { Err(missing(name)) } else { Ok(()) }
}

/// The user, their sessions and tokens (their jobs stay, with their name).
pub async fn remove(db: &DatabaseConnection, name: &str) -> Result<(), ApiError> {
    let n = user::Entity::delete_by_id(name.to_string())
        .exec(db)
        .await?
        .rows_affected;
    if n == 0 {
        return Err(missing(name));
    }
    session::Entity::delete_many()
        .filter(session::Column::UserName.eq(name))
        .exec(db)
        .await?;
    token::Entity::delete_many()
        .filter(token::Column::UserName.eq(name))
        .exec(db)
        .await?;
    Ok(())
}

pub async fn list(db: &DatabaseConnection) -> Result<Vec<user::Model>, ApiError> {
    Ok(user::Entity::find()
        .order_by_asc(user::Column::Name)
        .all(db)
        .await?)
}

/// A new token for `user`: its row, and the secret (shown once, stored only as a digest).
pub async fn create_token(
    db: &DatabaseConnection,
    user: &str,
    name: &str,
    write: bool,
    expires_days: Option<u32>,
) -> Result<(token::Model, String), ApiError> {
    let n = name.chars().count();
    if n == 0 || n > 64 || name.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "name",
            "a token's name has 1 to 64 characters",
        ));
    }
    if expires_days == Some(0) || expires_days.is_some_and(|d| d > 3650) {
        return Err(ApiError::invalid(
            "expires_days",
            "a token lasts 1 to 3650 days",
        ));
    }
    let secret = super::new_secret("mljm_");
    let now = Utc::now();
    let row = token::Model {
        id: Uuid::new_v4(),
        user_name: user.to_string(),
        name: name.to_string(),
        hash: digest(&secret),
        scope: if write { "write" } else { "read" }.into(),
        created_at: now,
        expires_at: expires_days.map(|d| now + chrono::Duration::days(d.into())),
        last_used_at: None,
        revoked_at: None,
    };
    token::Entity::insert(token::ActiveModel {
        id: Set(row.id),
        user_name: Set(row.user_name.clone()),
        name: Set(row.name.clone()),
        hash: Set(row.hash.clone()),
        scope: Set(row.scope.clone()),
        created_at: Set(row.created_at),
        expires_at: Set(row.expires_at),
        last_used_at: Set(None),
        revoked_at: Set(None),
    })
    .exec(db)
    .await?;
    Ok((row, secret))
}

//! Accounts (SPEC §11). In `password` mode people log in (a session cookie for the pages)
//! and scripts send `Authorization: Bearer <token>`; in `proxy` mode a trusted reverse proxy
//! names the user in a header; in `off` mode (loopback only) there are no accounts. The
//! request guard authenticates each request once and runs the handler inside
//! [`scoped`], so the services below ask [`current`] who acts — workers and the CLI act as
//! nobody and are never refused. Secrets are stored as SHA-256 digests (tokens, sessions:
//! random 256-bit values, so a digest cannot be searched back) or Argon2id (passwords).

pub mod entities;
pub mod users;

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{LazyLock, Mutex},
    time::{Duration, Instant},
};

use actix_web::{HttpRequest, http::Method};
use argon2::{
    Argon2, PasswordHash, PasswordHasher, PasswordVerifier,
    password_hash::{SaltString, rand_core::OsRng},
};
use chrono::Utc;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, sea_query::Expr,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{
    config::{AuthMode, Config},
    error::ApiError,
};
use entities::{audit, session, token, user};

/// The session cookie of the pages.
pub const SESSION_COOKIE: &str = "mljm_session";

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads everything.
    Viewer,
    /// Also creates and runs jobs, labels, uploads; acts on their own jobs.
    Member,
    /// Everything, users and everyone's jobs.
    Admin,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "viewer" => Some(Role::Viewer),
            "member" => Some(Role::Member),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Member => "member",
            Role::Admin => "admin",
        }
    }
}

/// Who a request acts for.
#[derive(Debug, Clone)]
pub struct Identity {
    pub user: String,
    pub role: Role,
    /// False for a `read` token.
    pub write: bool,
    /// The role is one of `auth.command_roles`.
    pub may_command: bool,
    /// A page session (its digest), for logout.
    pub session: Option<String>,
    /// The peer address, for the audit trail.
    pub address: Option<String>,
}

tokio::task_local! {
    static CURRENT: Option<Identity>;
}

/// Runs `f` as `who` (none: nobody, the workers and the CLI, never refused).
pub async fn scoped<F: Future>(who: Option<Identity>, f: F) -> F::Output {
    CURRENT.scope(who, f).await
}

/// Who the running request acts for.
pub fn current() -> Option<Identity> {
    CURRENT.try_with(Clone::clone).ok().flatten()
}

pub fn current_user() -> Option<String> {
    current().map(|i| i.user)
}

/// What runs arbitrary commands (SCRIPT, the submit form, a cluster target) needs a role in
/// `auth.command_roles`.
pub fn require_command(what: &str) -> Result<(), ApiError> {
    match current() {
        Some(i) if !i.may_command => Err(ApiError::Forbidden(format!(
            "{what} runs arbitrary commands, which needs a role listed in auth.command_roles; \
             {} is a {}",
            i.user,
            i.role.as_str()
        ))),
        _ => Ok(()),
    }
}

/// Whether `who` (none: nobody, never refused) may act on what `owner` made.
fn owns(who: Option<&Identity>, owner: Option<&str>) -> bool {
    who.is_none_or(|i| i.role == Role::Admin || owner == Some(i.user.as_str()))
}

pub fn is_admin() -> bool {
    current().is_none_or(|i| i.role == Role::Admin)
}

/// Acting on a job (abort, delete, relabel, its files): its owner or an admin.
pub fn require_owner(owner: Option<&str>, what: &str) -> Result<(), ApiError> {
    if owns(current().as_ref(), owner) {
        return Ok(());
    }
    Err(ApiError::Forbidden(format!(
        "{what} belongs to {}: only its owner or an admin may change it",
        owner.unwrap_or("no one (made before accounts)")
    )))
}

/// Whether the current user may change things at all (the pages hide what they may not).
pub fn may_write() -> bool {
    current().is_none_or(|i| i.write && i.role != Role::Viewer)
}

/// Whether the current user may change a job of `owner`'s.
pub fn may_change(owner: Option<&str>) -> bool {
    may_write() && owns(current().as_ref(), owner)
}

/// Users, other people's tokens, the audit trail.
pub fn require_admin(what: &str) -> Result<(), ApiError> {
    match current() {
        Some(i) if i.role != Role::Admin => Err(ApiError::Forbidden(format!(
            "{what} is for admins; {} is a {}",
            i.user,
            i.role.as_str()
        ))),
        _ => Ok(()),
    }
}

/// SHA-256 of a secret, hex.
pub fn digest(secret: &str) -> String {
    Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A new random secret (256 bits), URL-safe.
pub fn new_secret(prefix: &str) -> String {
    let bytes: [u8; 32] = rand::random();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}{hex}")
}

pub fn hash_password(password: &str) -> Result<String, ApiError> {
    Argon2::default()
        .hash_password(password.as_bytes(), &SaltString::generate(&mut OsRng))
        .map(|h| h.to_string())
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("argon2: {e}")))
}

/// A hash checked when the account does not exist, so that the answer takes as long.
static DUMMY_HASH: LazyLock<String> =
    LazyLock::new(|| hash_password("not a password").unwrap_or_default());

/// Whether `password` matches `hash` (Argon2's comparison is constant-time); a missing
/// account costs the same Argon2 run.
pub fn verify_password(hash: Option<&str>, password: &str) -> bool {
    let (stored, real) = match hash {
        Some(h) => (h, true),
        None => (DUMMY_HASH.as_str(), false),
    };
    let ok = PasswordHash::new(stored).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    });
    ok && real
}

/// Failed logins per account and per address: at most [`MAX_FAILURES`] a minute.
#[derive(Default)]
pub struct Limiter {
    failures: Mutex<HashMap<String, Vec<Instant>>>,
}

pub const MAX_FAILURES: usize = 5;
const WINDOW: Duration = Duration::from_secs(60);

impl Limiter {
    /// `Err(wait)` while any key has had its failures within the window.
    pub fn check(&self, keys: &[String]) -> Result<(), Duration> {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let mut wait = Duration::ZERO;
        for k in keys {
            if let Some(times) = map.get_mut(k) {
                times.retain(|t| now.duration_since(*t) < WINDOW);
                if times.len() >= MAX_FAILURES {
                    wait = wait.max(WINDOW - now.duration_since(times[0]));
                }
            }
        }
        if wait.is_zero() { Ok(()) } else { Err(wait) }
    }

    pub fn fail(&self, keys: &[String]) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        // Bounded: a flood of made-up names cannot grow it without end.
        if map.len() > 100_000 {
            map.clear();
        }
        for k in keys {
            map.entry(k.clone()).or_default().push(Instant::now());
        }
    }
}

/// Appends to the audit trail; a failure to write it is logged, never the request's.
pub async fn audit(
    db: &DatabaseConnection,
    action: &str,
    object: Option<String>,
    user: Option<String>,
    address: Option<String>,
) {
    let who = current();
    let row = audit::ActiveModel {
        at: Set(Utc::now()),
        user_name: Set(user.or_else(|| who.as_ref().map(|w| w.user.clone()))),
        action: Set(action.to_string()),
        object: Set(object),
        address: Set(address.or_else(|| who.and_then(|w| w.address))),
        ..Default::default()
    };
    if let Err(e) = audit::Entity::insert(row).exec(db).await {
        tracing::warn!("audit {action}: {e}");
    }
}

/// The request's peer address.
pub fn address(req: &HttpRequest) -> Option<IpAddr> {
    req.peer_addr().map(|a| a.ip())
}

fn trusted(config: &Config, ip: Option<IpAddr>) -> bool {
    let Some(ip) = ip else { return false };
    config
        .auth
        .proxy
        .trusted
        .iter()
        .any(|net| crate::config::parse_net(net).is_some_and(|n| n.contains(&ip)))
}

fn identity_of(config: &Config, u: &user::Model, write: bool) -> Identity {
    let role = Role::parse(&u.role).unwrap_or(Role::Viewer);
    Identity {
        user: u.name.clone(),
        role,
        write,
        may_command: config.auth.command_roles.iter().any(|r| r == role.as_str()),
        session: None,
        address: None,
    }
}

/// Who the request is from: a bearer token, the proxy's header (from a trusted address), or
/// a page session. `Ok(None)`: nobody (or accounts are off). A token that is not valid is a
/// 401 of its own, so that a script learns its token has expired.
pub async fn authenticate(
    config: &Config,
    db: &DatabaseConnection,
    req: &HttpRequest,
) -> Result<Option<Identity>, ApiError> {
    let mut who = identify(config, db, req).await?;
    if let Some(w) = &mut who {
        w.address = address(req).map(|a| a.to_string());
    }
    Ok(who)
}

async fn identify(
    config: &Config,
    db: &DatabaseConnection,
    req: &HttpRequest,
) -> Result<Option<Identity>, ApiError> {
    let mode = config.auth_mode();
    if mode == AuthMode::Off {
        return Ok(None);
    }
    let now = Utc::now();
    if let Some(value) = req.headers().get(actix_web::http::header::AUTHORIZATION) {
        let value = value.to_str().unwrap_or_default();
        let Some(secret) = value.strip_prefix("Bearer ") else {
            return Err(ApiError::Unauthorized(
                "the Authorization header is not \"Bearer <token>\"".into(),
            ));
        };
        let invalid = || {
            ApiError::Unauthorized("the token is not valid (unknown, expired or revoked)".into())
        };
        let t = token::Entity::find()
            .filter(token::Column::Hash.eq(digest(secret.trim())))
            .one(db)
            .await?
            .ok_or_else(invalid)?;
        if t.revoked_at.is_some() || t.expires_at.is_some_and(|e| e <= now) {
            return Err(invalid());
        }
        let u = user::Entity::find_by_id(t.user_name.clone())
            .one(db)
            .await?
            .ok_or_else(invalid)?;
        if t.last_used_at
            .is_none_or(|l| now - l > chrono::Duration::seconds(60))
        {
            token::Entity::update_many()
                .filter(token::Column::Id.eq(t.id))
                .col_expr(token::Column::LastUsedAt, Expr::value(now))
                .exec(db)
                .await?;
        }
        return Ok(Some(identity_of(config, &u, t.scope == "write")));
    }
    if mode == AuthMode::Proxy {
        let header = &config.auth.proxy.header;
        if let Some(name) = req.headers().get(header.as_str())
            && trusted(config, address(req))
        {
            let name = name.to_str().unwrap_or_default().trim();
            if users::check_name(name).is_ok() {
                let u = users::proxy_user(db, name, &config.auth.proxy.default_role).await?;
                return Ok(Some(identity_of(config, &u, true)));
            }
        }
        return Ok(None);
    }
    if let Some(cookie) = req.cookie(SESSION_COOKIE) {
        let hash = digest(cookie.value());
        if let Some(s) = session::Entity::find_by_id(hash.clone()).one(db).await? {
            let idle = chrono::Duration::seconds((config.auth.session_idle_h * 3600.0) as i64);
            let max = chrono::Duration::seconds((config.auth.session_max_h * 3600.0) as i64);
            if now - s.last_seen_at > idle || now - s.created_at > max {
                session::Entity::delete_by_id(hash).exec(db).await?;
                return Ok(None);
            }
            let Some(u) = user::Entity::find_by_id(s.user_name.clone())
                .one(db)
                .await?
            else {
                return Ok(None);
            };
            if now - s.last_seen_at > chrono::Duration::seconds(60) {
                session::Entity::update_many()
                    .filter(session::Column::Hash.eq(hash.clone()))
                    .col_expr(session::Column::LastSeenAt, Expr::value(now))
                    .exec(db)
                    .await?;
            }
            let mut who = identity_of(config, &u, true);
            who.session = Some(hash);
            return Ok(Some(who));
        }
    }
    Ok(None)
}

/// Paths anyone may reach: the login page and its API, static assets, a health check and
/// the API's description.
fn public(path: &str) -> bool {
    matches!(
        path,
        "/login" | "/api/auth/login" | "/api/health" | "/api/openapi.json" | "/api/docs"
    ) || path.starts_with("/static/")
}

/// What the request may not do as `who`: `Some(refusal)`. Reading needs an account;
/// changing anything needs a write token (or a session) and a role above viewer. Finer
/// rules (owners, commands, admin) are the services'.
pub fn gate(config: &Config, who: Option<&Identity>, req: &HttpRequest) -> Option<Refusal> {
    if config.auth_mode() == AuthMode::Off || public(req.path()) {
        return None;
    }
    let Some(who) = who else {
        return Some(if req.path().starts_with("/api") {
            Refusal::Api(ApiError::Unauthorized(
                "log in first: send Authorization: Bearer <token> (mljm login, or a token \
                 from the Tokens page)"
                    .into(),
            ))
        } else {
            let next = match req.query_string() {
                "" => req.path().to_string(),
                q => format!("{}?{q}", req.path()),
            };
            Refusal::Login(next)
        });
    };
    let reads = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let logout = matches!(req.path(), "/api/auth/logout" | "/logout");
    if reads || logout {
        return None;
    }
    if !who.write {
        return Some(Refusal::Api(ApiError::Forbidden(
            "this token may only read (scope read): make one with scope write".into(),
        )));
    }
    // A viewer keeps their own tokens (read ones are all a viewer's role can use).
    let own_tokens = req.path() == "/tokens" || req.path().starts_with("/api/tokens");
    if who.role == Role::Viewer && !own_tokens {
        return Some(Refusal::Api(ApiError::Forbidden(format!(
            "{} is a viewer: viewers may only read",
            who.user
        ))));
    }
    None
}

pub enum Refusal {
    Api(ApiError),
    /// A page: to the login form, then back here.
    Login(String),
}

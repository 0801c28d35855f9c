//! The accounts' API (`/api/auth/…`, `/api/tokens`, `/api/audit`, `/api/health`) and the
//! login page.

use actix_web::{
    HttpRequest, HttpResponse,
    cookie::{Cookie, SameSite},
    web,
};
use askama::Template;
use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, sea_query::Expr,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::auth::{
    Identity, Role, SESSION_COOKIE, address, audit, current, digest,
    entities::{audit as audit_entry, session, token, user},
    new_secret, require_admin, verify_password,
};
use crate::{
    config::AuthMode,
    error::{ApiError, Body as Error},
    state::AppState,
};

#[derive(utoipa::OpenApi)]
#[openapi(paths(
    login,
    logout,
    me,
    health,
    create_token,
    list_tokens,
    revoke_token,
    audit_log
))]
pub struct Api;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/auth/login", web::post().to(login))
        .route("/auth/logout", web::post().to(logout))
        .route("/auth/me", web::get().to(me))
        .route("/health", web::get().to(health))
        .service(
            web::resource(["/tokens", "/tokens/"])
                .route(web::post().to(create_token))
                .route(web::get().to(list_tokens)),
        )
        .route("/tokens/{id}", web::delete().to(revoke_token))
        .route("/audit", web::get().to(audit_log));
}

pub fn configure_pages(cfg: &mut web::ServiceConfig) {
    cfg.route("/login", web::get().to(login_page))
        .route("/login", web::post().to(login_form))
        .route("/logout", web::post().to(logout_form))
        .route("/tokens", web::get().to(tokens_page))
        .route("/tokens", web::post().to(tokens_form))
        .route("/audit", web::get().to(audit_page));
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

#[derive(Serialize, Deserialize, utoipa::ToSchema)]
pub struct Me {
    /// None when accounts are off.
    pub user: Option<String>,
    pub role: Role,
    /// `off`, `password` or `proxy`.
    pub mode: String,
}

fn mode_name(state: &AppState) -> String {
    state.config.auth_mode().as_str().to_string()
}

/// Checks the password, within the limits on failures; a new session's secret.
async fn open_session(
    state: &AppState,
    req: &HttpRequest,
    c: &Credentials,
) -> Result<(String, user::Model), ApiError> {
    if state.config.auth_mode() != AuthMode::Password {
        return Err(ApiError::Conflict(
            "logging in with a password needs auth.mode = \"password\"".into(),
        ));
    }
    let ip = address(req).map(|a| a.to_string());
    let keys = [
        format!("user:{}", c.username),
        format!("addr:{}", ip.as_deref().unwrap_or("?")),
    ];
    if let Err(wait) = state.limiter.check(&keys) {
        audit(
            &state.db,
            "login_refused",
            Some(c.username.clone()),
            None,
            ip.clone(),
        )
        .await;
        return Err(ApiError::TooManyRequests {
            message: format!(
                "too many failed logins for this account or address; try again in {} s",
                wait.as_secs() + 1
            ),
            retry_after_s: wait.as_secs() + 1,
        });
    }
    let found = if crate::auth::users::check_name(&c.username).is_ok() {
        user::Entity::find_by_id(c.username.clone())
            .one(&state.db)
            .await?
    } else {
        None
    };
    // The same Argon2 run whether or not the account exists; the same words either way.
    if !verify_password(
        found.as_ref().and_then(|u| u.password_hash.as_deref()),
        &c.password,
    ) {
        state.limiter.fail(&keys);
        audit(
            &state.db,
            "login_failed",
            Some(c.username.clone()),
            None,
            ip,
        )
        .await;
        return Err(ApiError::Unauthorized("wrong user name or password".into()));
    }
    let u = found.ok_or_else(|| ApiError::Unauthorized("wrong user name or password".into()))?;
    let secret = new_secret("");
    let now = Utc::now();
    session::Entity::insert(session::ActiveModel {
        hash: sea_orm::ActiveValue::Set(digest(&secret)),
        user_name: sea_orm::ActiveValue::Set(u.name.clone()),
        created_at: sea_orm::ActiveValue::Set(now),
        last_seen_at: sea_orm::ActiveValue::Set(now),
    })
    .exec(&state.db)
    .await?;
    audit(&state.db, "login", None, Some(u.name.clone()), ip).await;
    Ok((secret, u))
}

fn session_cookie(req: &HttpRequest, value: String, max_age_h: f64) -> Cookie<'static> {
    let https = req.connection_info().scheme() == "https";
    Cookie::build(SESSION_COOKIE, value)
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(https)
        .max_age(actix_web::cookie::time::Duration::seconds(
            (max_age_h * 3600.0) as i64,
        ))
        .finish()
}

async fn close_session(state: &AppState, req: &HttpRequest) -> Result<(), ApiError> {
    if let Some(who) = current()
        && let Some(hash) = &who.session
    {
        session::Entity::delete_by_id(hash.clone())
            .exec(&state.db)
            .await?;
        audit(
            &state.db,
            "logout",
            None,
            None,
            address(req).map(|a| a.to_string()),
        )
        .await;
    }
    Ok(())
}

#[utoipa::path(post, path = "/api/auth/login",
    summary = "Log in (password mode): a session cookie for the pages",
    request_body = Credentials,
    responses((status = 200, description = "logged in; the cookie is set", body = Me),
              (status = 401, description = "wrong user name or password", body = Error),
              (status = 409, description = "accounts are not in password mode", body = Error),
              (status = 429, description = "too many failed logins; see Retry-After", body = Error)))]
async fn login(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<Credentials>,
) -> Result<HttpResponse, ApiError> {
    let (secret, u) = open_session(&state, &req, &body).await?;
    Ok(HttpResponse::Ok()
        .cookie(session_cookie(
            &req,
            secret,
            state.config.auth.session_max_h,
        ))
        .json(Me {
            user: Some(u.name),
            role: Role::parse(&u.role).unwrap_or(Role::Viewer),
            mode: mode_name(&state),
        }))
}

#[utoipa::path(post, path = "/api/auth/logout",
    summary = "End this session (its cookie no longer works)",
    responses((status = 204, description = "logged out")))]
async fn logout(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    close_session(&state, &req).await?;
    let mut gone = session_cookie(&req, String::new(), 0.0);
    gone.make_removal();
    Ok(HttpResponse::NoContent().cookie(gone).finish())
}

#[utoipa::path(get, path = "/api/auth/me",
    summary = "Who this request acts for",
    responses((status = 200, description = "the user and role", body = Me)))]
async fn me(state: web::Data<AppState>) -> HttpResponse {
    let who = current();
    HttpResponse::Ok().json(Me {
        role: who.as_ref().map_or(Role::Admin, |w| w.role),
        user: who.map(|w| w.user),
        mode: mode_name(&state),
    })
}

#[utoipa::path(get, path = "/api/health",
    summary = "Whether the server answers (no credentials needed)",
    responses((status = 200, description = "it does")))]
async fn health() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct NewToken {
    #[schema(min_length = 1, max_length = 64)]
    pub name: String,
    /// `read` or `write` (default).
    pub scope: Option<String>,
    /// Days until it expires (1–3650); absent: never.
    #[schema(minimum = 1, maximum = 3650)]
    pub expires_days: Option<u32>,
}

#[derive(Serialize, Deserialize, utoipa::ToSchema)]
pub struct TokenView {
    pub id: Uuid,
    pub user: String,
    pub name: String,
    pub scope: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// The token itself: in the answer to its creation only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

impl From<token::Model> for TokenView {
    fn from(t: token::Model) -> Self {
        TokenView {
            id: t.id,
            user: t.user_name,
            name: t.name,
            scope: t.scope,
            created_at: t.created_at,
            expires_at: t.expires_at,
            last_used_at: t.last_used_at,
            revoked_at: t.revoked_at,
            token: None,
        }
    }
}

/// A new token of `user`'s, in the audit trail; its view with the secret (shown once).
async fn made_token(
    state: &AppState,
    req: &HttpRequest,
    user: &str,
    name: &str,
    write: bool,
    days: Option<u32>,
) -> Result<TokenView, ApiError> {
    let (row, secret) =
        crate::auth::users::create_token(&state.db, user, name, write, days).await?;
    audit(
        &state.db,
        "token_create",
        Some(format!("{} ({})", row.name, row.id)),
        None,
        address(req).map(|a| a.to_string()),
    )
    .await;
    let mut view = TokenView::from(row);
    view.token = Some(secret);
    Ok(view)
}

fn someone(what: &str) -> Result<Identity, ApiError> {
    current().ok_or_else(|| ApiError::Conflict(format!("{what} needs accounts (auth.mode)")))
}

#[utoipa::path(post, path = "/api/tokens/",
    summary = "A new API token for this user (shown once)",
    request_body = NewToken,
    responses((status = 201, description = "the token, with its secret", body = TokenView),
              (status = 409, description = "accounts are off", body = Error)))]
async fn create_token(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<NewToken>,
) -> Result<HttpResponse, ApiError> {
    let who = someone("a token")?;
    let write = match body.scope.as_deref().unwrap_or("write") {
        "write" => true,
        "read" => false,
        other => {
            return Err(ApiError::invalid(
                "scope",
                format!("{other:?} is not read or write"),
            ));
        }
    };
    // A read token cannot make itself a write one.
    if write && !who.write {
        return Err(ApiError::Forbidden(
            "a read token cannot make a write token".into(),
        ));
    }
    let view = made_token(
        &state,
        &req,
        &who.user,
        &body.name,
        write,
        body.expires_days,
    )
    .await?;
    Ok(HttpResponse::Created().json(view))
}

#[utoipa::path(get, path = "/api/tokens/",
    summary = "This user's tokens (all users' for an admin), without their secrets",
    responses((status = 200, description = "the tokens", body = Vec<TokenView>)))]
async fn list_tokens(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let who = someone("tokens")?;
    let mut q = token::Entity::find().order_by_desc(token::Column::CreatedAt);
    if who.role != Role::Admin {
        q = q.filter(token::Column::UserName.eq(who.user));
    }
    let rows: Vec<TokenView> = q
        .limit(1000)
        .all(&state.db)
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    Ok(HttpResponse::Ok().json(rows))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
struct TokenId {
    id: Uuid,
}

#[utoipa::path(delete, path = "/api/tokens/{id}",
    summary = "Revoke a token (its own user's, or any for an admin)",
    params(TokenId),
    responses((status = 204, description = "revoked"),
              (status = 404, description = "no such token of this user", body = Error)))]
async fn revoke_token(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<TokenId>,
) -> Result<HttpResponse, ApiError> {
    let who = someone("revoking a token")?;
    let mut q = token::Entity::update_many()
        .filter(token::Column::Id.eq(path.id))
        .filter(token::Column::RevokedAt.is_null())
        .col_expr(token::Column::RevokedAt, Expr::value(Utc::now()));
    if who.role != Role::Admin {
        q = q.filter(token::Column::UserName.eq(who.user.clone()));
    }
    if q.exec(&state.db).await?.rows_affected == 0 {
        return Err(ApiError::NotFound(format!(
            "no live token {} of yours",
            path.id
        )));
    }
    audit(
        &state.db,
        "token_revoke",
        Some(path.id.to_string()),
        None,
        address(&req).map(|a| a.to_string()),
    )
    .await;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct Page {
    /// Entries to skip (newest first).
    #[param(maximum = 9_223_372_036_854_775_807_u64)]
    offset: Option<u64>,
    /// 1 to 1000 (100 when absent).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u64>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct AuditPage {
    total: u64,
    entries: Vec<audit_entry::Model>,
}

#[utoipa::path(get, path = "/api/audit",
    summary = "The audit trail, newest first (admins)",
    params(Page),
    responses((status = 200, description = "a page of it", body = AuditPage),
              (status = 403, description = "not an admin", body = Error)))]
async fn audit_log(
    state: web::Data<AppState>,
    q: web::Query<Page>,
) -> Result<HttpResponse, ApiError> {
    require_admin("the audit trail")?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid(
            "limit",
            "limit must be between 1 and 1000",
        ));
    }
    let offset = q.offset.unwrap_or(0).min(i64::MAX as u64);
    let total = audit_entry::Entity::find().count(&state.db).await?;
    let entries = audit_entry::Entity::find()
        .order_by_desc(audit_entry::Column::Id)
        .offset(offset)
        .limit(limit)
        .all(&state.db)
        .await?;
    Ok(HttpResponse::Ok().json(AuditPage { total, entries }))
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    next: String,
    error: Option<String>,
    username: String,
}

#[derive(Deserialize)]
struct Next {
    next: Option<String>,
}

/// Only a path of this server (never `//elsewhere` or a URL).
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.to_string(),
        _ => "/".into(),
    }
}

async fn login_page(q: web::Query<Next>) -> Result<HttpResponse, crate::pages::PageError> {
    crate::pages::html(
        LoginPage {
            next: safe_next(q.next.as_deref()),
            error: None,
            username: String::new(),
        }
        .render(),
    )
}

#[derive(Deserialize)]
struct LoginForm {
    username: String,
    password: String,
    next: Option<String>,
}

async fn login_form(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: web::Form<LoginForm>,
) -> Result<HttpResponse, crate::pages::PageError> {
    let c = Credentials {
        username: form.username.clone(),
        password: form.password.clone(),
    };
    let next = safe_next(form.next.as_deref());
    match open_session(&state, &req, &c).await {
        Ok((secret, _)) => Ok(HttpResponse::SeeOther()
            .cookie(session_cookie(
                &req,
                secret,
                state.config.auth.session_max_h,
            ))
            .insert_header(("Location", next))
            .finish()),
        Err(
            e @ (ApiError::Unauthorized(_)
            | ApiError::TooManyRequests { .. }
            | ApiError::Conflict(_)),
        ) => {
            let status = actix_web::ResponseError::status_code(&e);
            crate::pages::html_status(
                status,
                LoginPage {
                    next,
                    error: Some(e.to_string()),
                    username: form.username.clone(),
                }
                .render(),
            )
        }
        Err(e) => Err(e.into()),
    }
}

async fn logout_form(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, crate::pages::PageError> {
    close_session(&state, &req).await?;
    let mut gone = session_cookie(&req, String::new(), 0.0);
    gone.make_removal();
    Ok(HttpResponse::SeeOther()
        .cookie(gone)
        .insert_header(("Location", "/login"))
        .finish())
}

#[derive(Template)]
#[template(path = "tokens.html")]
struct TokensPage {
    layout: crate::pages::Layout,
    tokens: Vec<TokenView>,
    /// A token just made: shown this once.
    made: Option<TokenView>,
    error: Option<String>,
}

async fn tokens_view(state: &AppState) -> Result<Vec<TokenView>, ApiError> {
    let who = someone("tokens")?;
    Ok(token::Entity::find()
        .filter(token::Column::UserName.eq(who.user))
        .order_by_desc(token::Column::CreatedAt)
        .limit(200)
        .all(&state.db)
        .await?
        .into_iter()
        .map(Into::into)
        .collect())
}

/// Your tokens: make one (shown once), revoke one.
async fn tokens_page(state: web::Data<AppState>) -> Result<HttpResponse, crate::pages::PageError> {
    crate::pages::html(
        TokensPage {
            layout: crate::pages::Layout::new(&state, "tokens").await,
            tokens: tokens_view(&state).await?,
            made: None,
            error: None,
        }
        .render(),
    )
}

#[derive(Deserialize)]
struct TokenForm {
    name: String,
    scope: String,
    expires_days: Option<String>,
}

async fn tokens_form(
    state: web::Data<AppState>,
    req: HttpRequest,
    form: web::Form<TokenForm>,
) -> Result<HttpResponse, crate::pages::PageError> {
    let who = someone("a token")?;
    let days = match form
        .expires_days
        .as_deref()
        .map(str::trim)
        .filter(|d| !d.is_empty())
    {
        None => Ok(None),
        Some(d) => d.parse::<u32>().map(Some).map_err(|_| {
            ApiError::invalid("expires_days", format!("{d:?} is not a count of days"))
        }),
    };
    let made = match days {
        Ok(days) => {
            made_token(
                &state,
                &req,
                &who.user,
                &form.name,
                form.scope != "read",
                days,
            )
            .await
        }
        Err(e) => Err(e),
    };
    let (made, error) = match made {
        Ok(view) => (Some(view), None),
        Err(ApiError::Invalid { message, .. }) => (None, Some(message)),
        Err(e) => return Err(e.into()),
    };
    crate::pages::html(
        TokensPage {
            layout: crate::pages::Layout::new(&state, "tokens").await,
            tokens: tokens_view(&state).await?,
            made,
            error,
        }
        .render(),
    )
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPageView {
    layout: crate::pages::Layout,
    entries: Vec<audit_entry::Model>,
    total: u64,
    offset: u64,
    next: Option<u64>,
}

/// The audit trail, newest first, 100 to a page (admins).
async fn audit_page(
    state: web::Data<AppState>,
    q: web::Query<Page>,
) -> Result<HttpResponse, crate::pages::PageError> {
    require_admin("the audit trail")?;
    let offset = q.offset.unwrap_or(0).min(i64::MAX as u64);
    let total = audit_entry::Entity::find()
        .count(&state.db)
        .await
        .map_err(ApiError::from)?;
    let entries = audit_entry::Entity::find()
        .order_by_desc(audit_entry::Column::Id)
        .offset(offset)
        .limit(100)
        .all(&state.db)
        .await
        .map_err(ApiError::from)?;
    crate::pages::html(
        AuditPageView {
            layout: crate::pages::Layout::new(&state, "audit").await,
            next: Some(offset + 100).filter(|n| *n < total),
            entries,
            total,
            offset,
        }
        .render(),
    )
}

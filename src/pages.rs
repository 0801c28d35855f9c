//! What every page shares: the header (version, queue depth), HTML responses with a
//! same-origin Content-Security-Policy, and errors rendered as pages a person can act on.

use actix_web::{HttpRequest, HttpResponse, ResponseError, http::StatusCode};
use askama::Template;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};

use crate::{
    error::ApiError,
    queue::{
        Phase,
        job::{self, Column as C},
    },
    state::AppState,
};

/// Pages load nothing from another host: every script, style, image and request is our own.
const CSP: &str = "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; \
                   connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; \
                   frame-ancestors 'none'";

/// The header every page shows.
pub struct Layout {
    pub version: &'static str,
    /// Jobs waiting; unknown on an error page, which is drawn without the database.
    pub queued: Option<u64>,
    /// The navigation entry to highlight.
    pub section: &'static str,
    /// Who is logged in (with accounts on).
    pub user: Option<String>,
    /// Whether they may change anything (a viewer is not offered what would be refused).
    pub may_write: bool,
    /// An admin (the audit trail).
    pub admin: bool,
}

impl Layout {
    pub async fn new(state: &AppState, section: &'static str) -> Layout {
        let queued = job::Entity::find()
            .filter(C::Phase.eq(Phase::Queued))
            .count(&state.db)
            .await
            .unwrap_or_default();
        Layout {
            version: env!("CARGO_PKG_VERSION"),
            queued: Some(queued),
            section,
            user: crate::auth::current_user(),
            may_write: crate::auth::may_write(),
            admin: crate::auth::is_admin(),
        }
    }
}

pub fn is_htmx(req: &HttpRequest) -> bool {
    req.headers().contains_key("HX-Request")
}

pub fn html(body: Result<String, askama::Error>) -> Result<HttpResponse, PageError> {
    html_status(StatusCode::OK, body)
}

pub fn html_status(
    status: StatusCode,
    body: Result<String, askama::Error>,
) -> Result<HttpResponse, PageError> {
    let body = body.map_err(|e| ApiError::Internal(anyhow::anyhow!("template: {e}")))?;
    Ok(HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header(("Content-Security-Policy", CSP))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .body(body))
}

/// A page's failure: the same codes and statuses as the API, drawn as a page.
#[derive(Debug)]
pub struct PageError(pub ApiError);

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> Self {
        PageError(e)
    }
}

impl std::fmt::Display for PageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    layout: Layout,
    status: u16,
    title: &'a str,
    message: String,
    hint: &'a str,
}

impl ResponseError for PageError {
    fn status_code(&self) -> StatusCode {
        self.0.status_code()
    }

    fn error_response(&self) -> HttpResponse {
        if let ApiError::Internal(e) = &self.0 {
            tracing::error!("{e:#}");
        }
        let status = self.status_code();
        let (title, hint) = match status {
            StatusCode::NOT_FOUND => (
                "Not found",
                "It may have been deleted. The jobs list shows what exists now.",
            ),
            StatusCode::CONFLICT => (
                "Not possible now",
                "The job is in a phase that does not allow this. Reload the job to see its phase.",
            ),
            StatusCode::UNPROCESSABLE_ENTITY => ("Invalid input", "Correct the value and retry."),
            StatusCode::PAYLOAD_TOO_LARGE => (
                "Too large",
                "The server's limits are in config.toml (server.json_limit, files.upload_limit).",
            ),
            _ => (
                "Something went wrong",
                "The server log has the details; retrying may help.",
            ),
        };
        let message = match &self.0 {
            ApiError::Internal(_) => "internal error".to_string(),
            e => e.to_string(),
        };
        let layout = Layout {
            version: env!("CARGO_PKG_VERSION"),
            queued: None,
            section: "",
            user: None,
            may_write: crate::auth::may_write(),
            admin: crate::auth::require_admin("").is_ok(),
        };
        let page = ErrorPage {
            layout,
            status: status.as_u16(),
            title,
            message,
            hint,
        };
        match html_status(status, page.render()) {
            Ok(resp) => resp,
            Err(_) => HttpResponse::build(status).body(self.0.to_string()),
        }
    }
}

/// The pages' forms: room for a config of `json_limit` bytes once URL-encoded (up to 3× its
/// size), and a page that says which limit was hit past that.
pub fn form_config(json_limit: usize) -> actix_web::web::FormConfig {
    actix_web::web::FormConfig::default()
        .limit(json_limit.saturating_mul(3).saturating_add(64 << 10))
        .error_handler(move |err, _| {
            use actix_web::error::UrlencodedError as E;
            let api = match &err {
                E::Overflow { .. } => ApiError::TooLarge(format!(
                    "form larger than the limit for a config of {json_limit} bytes (server.json_limit)"
                )),
                other => ApiError::Invalid {
                    field: None,
                    message: format!("invalid form: {other}"),
                },
            };
            PageError(api).into()
        })
}

/// HTML that one of our own templates rendered (escaped there): drawn as it is inside a page.
pub struct Rendered(pub String);

impl std::fmt::Display for Rendered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl askama::filters::HtmlSafe for Rendered {}

/// `filename` percent-encoded for a URL path segment or query value.
pub fn url_part(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// A byte count as people read it.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// JSON for a `data-json` attribute (askama escapes it like any attribute text; no `|safe`).
pub fn json_attr(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(80 * 1024), "80.0 KiB");
        assert_eq!(human_size(3 << 30), "3.0 GiB");
    }
}

//! Error codes mapped to HTTP status once, and the JSON renderer for `/api`.
//! Every domain error converts into [`ApiError`]; handlers return `Result<_, ApiError>`.

use actix_web::{HttpResponse, ResponseError, http::StatusCode};
use serde::Serialize;

/// What went wrong, in the researcher's words, with the code that decides the status.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    Invalid {
        field: Option<String>,
        message: String,
    },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    HeadersTooLarge(String),
    /// Something mljm depends on (a cluster) did not answer.
    #[error("{0}")]
    Unavailable(String),
    /// No credentials, or ones that are not valid (SPEC §11).
    #[error("{0}")]
    Unauthorized(String),
    /// The user may not do this; the message names the missing right.
    #[error("{0}")]
    Forbidden(String),
    #[error("{message}")]
    TooManyRequests { message: String, retry_after_s: u64 },
    #[error("internal error: {0:#}")]
    Internal(#[from] anyhow::Error),
}

/// The body of every error answer of `/api` (its `Error` schema).
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Error)]
pub struct Body<'a> {
    /// `invalid_input`, `not_found`, `conflict`, `too_large`, …
    code: &'a str,
    message: String,
    /// The path, query or body field at fault, where one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
    /// The original FastAPI stack answered `{detail}`; kept for its clients.
    detail: String,
}

impl ApiError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::Invalid {
            field: Some(field.into()),
            message: message.into(),
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Invalid { .. } => "invalid_input",
            ApiError::NotFound(_) => "not_found",
            ApiError::Conflict(_) => "conflict",
            ApiError::TooLarge(_) => "too_large",
            ApiError::BadRequest(_) => "bad_request",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::HeadersTooLarge(_) => "headers_too_large",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::TooManyRequests { .. } => "too_many_requests",
            ApiError::Internal(_) => "internal",
        }
    }
}

impl From<sea_orm::DbErr> for ApiError {
    fn from(e: sea_orm::DbErr) -> Self {
        ApiError::Internal(anyhow::Error::new(e).context("database"))
    }
}

impl From<std::io::Error> for ApiError {
    fn from(e: std::io::Error) -> Self {
        ApiError::Internal(anyhow::Error::new(e))
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::HeadersTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ApiError::Unavailable(_) => StatusCode::BAD_GATEWAY,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let ApiError::Internal(e) = self {
            tracing::error!("{e:#}");
        }
        let field = match self {
            ApiError::Invalid { field, .. } => field.as_deref(),
            _ => None,
        };
        let message = self.to_string();
        let mut resp = HttpResponse::build(self.status_code());
        match self {
            ApiError::TooManyRequests { retry_after_s, .. } => {
                resp.insert_header(("Retry-After", retry_after_s.to_string()));
            }
            ApiError::Unauthorized(_) => {
                resp.insert_header(("WWW-Authenticate", "Bearer realm=\"mljm\""));
            }
            _ => {}
        }
        resp.json(Body {
            code: self.code(),
            detail: message.clone(),
            message,
            field,
        })
    }
}

/// Turns actix's extractor failures (bad JSON, bad query, oversized body) into our JSON shape.
pub fn json_config(limit: usize) -> actix_web::web::JsonConfig {
    actix_web::web::JsonConfig::default()
        .limit(limit)
        .error_handler(move |err, _| {
            use actix_web::error::JsonPayloadError as E;
            let api = match &err {
                E::OverflowKnownLength { .. } | E::Overflow { .. } => ApiError::TooLarge(format!(
                    "JSON body larger than the limit of {limit} bytes (server.json_limit)"
                )),
                E::Deserialize(d) => ApiError::Invalid {
                    field: None,
                    message: format!("invalid JSON body: {d}"),
                },
                other => ApiError::Invalid {
                    field: None,
                    message: format!("invalid JSON body: {other}"),
                },
            };
            api.into()
        })
}

pub fn query_config() -> actix_web::web::QueryConfig {
    actix_web::web::QueryConfig::default().error_handler(|err, _| {
        ApiError::Invalid {
            field: None,
            message: format!("invalid query: {err}"),
        }
        .into()
    })
}

pub fn path_config() -> actix_web::web::PathConfig {
    actix_web::web::PathConfig::default().error_handler(|err, _| {
        ApiError::Invalid {
            field: None,
            message: format!("invalid path: {err}"),
        }
        .into()
    })
}

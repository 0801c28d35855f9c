//! SPEC §10 request checks: the Host header must name this server (421 otherwise), and a
//! state-changing request from another site (Origin or Sec-Fetch-Site) is refused with 403.
//! Before any handler: headers are bounded (431) and a query must decode to UTF-8 (422).

use std::net::IpAddr;

use actix_web::{HttpRequest, http::StatusCode};
use percent_encoding::percent_decode_str;

use crate::error::ApiError;

/// All request headers together, names and values: far above any browser's or client's, far
/// below what would let one request hold much memory.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

/// The bounds every request keeps, whatever it asks for.
pub fn bounds(req: &HttpRequest) -> Result<(), ApiError> {
    let bytes: usize = req
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    if bytes > MAX_HEADER_BYTES {
        return Err(ApiError::HeadersTooLarge(format!(
            "the request headers hold {bytes} bytes; at most {MAX_HEADER_BYTES} are accepted"
        )));
    }
    query_is_utf8(req.query_string())
}

/// Every key and value of a query decodes to UTF-8: `%c0%ae` is no path character. Runs on
/// every request: nothing is allocated unless it refuses.
fn query_is_utf8(query: &str) -> Result<(), ApiError> {
    let utf8 = |s: &str| percent_decode_str(s).decode_utf8().is_ok();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = || percent_decode_str(key).decode_utf8_lossy().into_owned();
        if !utf8(key) {
            return Err(ApiError::invalid(
                "query",
                format!(
                    "the query parameter {:?} is not valid UTF-8 once decoded",
                    name()
                ),
            ));
        }
        if !utf8(value) {
            let name = name();
            return Err(ApiError::invalid(
                name.clone(),
                format!("{name}: the value is not valid UTF-8 once decoded ({value:?})"),
            ));
        }
    }
    Ok(())
}

pub struct RequestPolicy {
    /// `None` when bound to 0.0.0.0 / [::]: any IP literal names this server then.
    bind_ip: Option<IpAddr>,
    allowed_hosts: Vec<String>,
}

/// The host part of a `Host` header or URL authority, lowercased, without port.
fn host_part(authority: &str) -> String {
    let a = authority.trim().to_ascii_lowercase();
    let host = if let Some(rest) = a.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default().to_string()
    } else {
        match a.rsplit_once(':') {
            Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h.to_string(),
            _ => a,
        }
    };
    host.trim_end_matches('.').to_string()
}

impl RequestPolicy {
    pub fn new(bind: &str, allowed_hosts: &[String]) -> RequestPolicy {
        let ip = host_part(bind).parse::<IpAddr>().ok();
        RequestPolicy {
            bind_ip: ip.filter(|ip| !ip.is_unspecified()),
            allowed_hosts: allowed_hosts
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
        }
    }

    pub fn host_allowed(&self, host_header: &str) -> bool {
        let host = host_part(host_header);
        if host == "localhost" || self.allowed_hosts.contains(&host) {
            return true;
        }
        match (host.parse::<IpAddr>(), self.bind_ip) {
            (Ok(ip), Some(bound)) => ip == bound || (ip.is_loopback() && bound.is_loopback()),
            (Ok(_), None) => true,
            (Err(_), _) => false,
        }
    }

    /// `Some((status, reason))` when the request must be refused.
    pub fn check(&self, req: &HttpRequest) -> Option<(StatusCode, String)> {
        let headers = req.headers();
        let host = headers
            .get("host")
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default();
        if !host.is_empty() && !self.host_allowed(host) {
            return Some((
                StatusCode::MISDIRECTED_REQUEST,
                format!("host {host:?} is not served here; add it to server.allowed_hosts"),
            ));
        }
        if req.method().is_safe() {
            return None;
        }
        if headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) == Some("cross-site") {
            return Some((
                StatusCode::FORBIDDEN,
                "cross-site requests may not change anything here".into(),
            ));
        }
        if let Some(origin) = headers.get("origin") {
            let origin = origin.to_str().unwrap_or("null");
            let authority = origin
                .split_once("://")
                .map(|(_, a)| a.trim_end_matches('/'));
            if authority.is_none_or(|a| !a.eq_ignore_ascii_case(host)) {
                return Some((
                    StatusCode::FORBIDDEN,
                    format!("requests from {origin} may not change anything here"),
                ));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_must_decode_to_utf8() {
        assert!(query_is_utf8("parent_dir_path=%2Fa%20b&x=%CE%B1+y").is_ok());
        assert!(query_is_utf8("").is_ok());
        let e = query_is_utf8("parent_dir_path=%c0%ae%c0%ae").unwrap_err();
        let ApiError::Invalid { field, message } = e else {
            panic!("422")
        };
        assert_eq!(field.as_deref(), Some("parent_dir_path"));
        assert!(message.contains("not valid UTF-8"), "{message}");
        assert!(query_is_utf8("%ff=1").is_err());
    }

    #[test]
    fn a_rebinding_host_name_is_refused() {
        let p = RequestPolicy::new("127.0.0.1:8000", &[]);
        assert!(!p.host_allowed("evil.example:8000"));
        assert!(p.host_allowed("localhost:8000"));
        assert!(p.host_allowed("127.0.0.1:8000"));
        assert!(!p.host_allowed("10.0.0.1:8000"));
    }

    #[test]
    fn allowed_hosts_and_any_ip_when_bound_to_all() {
        let p = RequestPolicy::new("0.0.0.0:8000", &["Lab.Example".into()]);
        assert!(p.host_allowed("lab.example"));
        assert!(p.host_allowed("192.168.1.5:8000"));
        assert!(p.host_allowed("[::1]:8000"));
        assert!(!p.host_allowed("other.example"));
    }
}

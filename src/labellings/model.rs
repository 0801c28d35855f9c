//! Labelling types and their rules: the three spectrum sets, and the text a person may type.

use serde::Deserialize;
use uuid::Uuid;

use crate::{db::entities::labelling, error::ApiError};

pub use crate::db::entities::labelling::SpectrumSet;

impl SpectrumSet {
    /// The set a request names, or a 422 naming `spectrum_set`.
    pub fn parse(s: &str) -> Result<SpectrumSet, ApiError> {
        SpectrumSet::from_name(s).ok_or_else(|| {
            ApiError::invalid(
                "spectrum_set",
                format!("{s:?} is not ORACLE, PERFORMANCE_ESTIMATION or CANDIDATE"),
            )
        })
    }
}

/// Text typed by a person: bounded, and no control characters other than newline and tab in
/// comments.
pub fn check_text(
    field: &str,
    value: &str,
    max_chars: usize,
    multiline: bool,
) -> Result<(), ApiError> {
    if value.chars().count() > max_chars {
        return Err(ApiError::invalid(
            field,
            format!("{field} is longer than {max_chars} characters"),
        ));
    }
    if value
        .chars()
        .any(|c| c.is_control() && !(multiline && (c == '\n' || c == '\t' || c == '\r')))
    {
        return Err(ApiError::invalid(
            field,
            format!("{field} must not contain control characters"),
        ));
    }
    Ok(())
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct NewLabelling {
    pub job_id: Uuid,
    #[schema(min_length = 1, max_length = 255)]
    pub spectrum_filename: String,
    #[schema(value_type = SpectrumSet)]
    pub spectrum_set: String,
    #[serde(default)]
    #[schema(minimum = 0)]
    pub sequence_iteration: i32,
    pub model_prediction: Option<String>,
    pub user_label: Option<String>,
    pub user_comment: Option<String>,
    /// Set by an iteration only: its prediction's entropy.
    #[serde(skip)]
    pub entropy: Option<f64>,
    /// Set by an iteration only: the spectrum's row in its `result.h5`.
    #[serde(skip)]
    pub result_row: Option<i64>,
}

impl NewLabelling {
    pub fn check(&self) -> Result<SpectrumSet, ApiError> {
        if self.spectrum_filename.trim().is_empty() {
            return Err(ApiError::invalid(
                "spectrum_filename",
                "spectrum_filename is empty",
            ));
        }
        check_text("spectrum_filename", &self.spectrum_filename, 255, false)?;
        if self.sequence_iteration < 0 {
            return Err(ApiError::invalid(
                "sequence_iteration",
                "sequence_iteration must be ≥ 0",
            ));
        }
        LabellingPatch {
            user_label: self.user_label.clone(),
            user_comment: self.user_comment.clone(),
            model_prediction: self.model_prediction.clone(),
        }
        .check()?;
        SpectrumSet::parse(&self.spectrum_set)
    }
}

/// Fields a PATCH may change; absent ones stay, an empty string clears.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
pub struct LabellingPatch {
    /// `""` clears.
    #[schema(max_length = 100)]
    pub user_label: Option<String>,
    #[schema(max_length = 2000)]
    pub user_comment: Option<String>,
    #[schema(max_length = 100)]
    pub model_prediction: Option<String>,
}

impl LabellingPatch {
    pub fn check(&self) -> Result<(), ApiError> {
        if let Some(v) = &self.user_label {
            check_text("user_label", v, 100, false)?;
        }
        if let Some(v) = &self.model_prediction {
            check_text("model_prediction", v, 100, false)?;
        }
        if let Some(v) = &self.user_comment {
            check_text("user_comment", v, 2000, true)?;
        }
        Ok(())
    }
}

/// A labelling as the API shows it: the table row without its list position.
pub type LabellingView = labelling::Model;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_spectrum_set_is_rejected() {
        assert!(SpectrumSet::parse("ORACLE").is_ok());
        assert!(SpectrumSet::parse("oracle").is_err());
    }

    #[test]
    fn a_label_with_a_control_character_is_rejected_but_a_comment_may_have_lines() {
        assert!(check_text("user_label", "single\u{0}peak", 100, false).is_err());
        assert!(check_text("user_comment", "two\nlines", 2000, true).is_ok());
        assert!(check_text("user_label", &"x".repeat(101), 100, false).is_err());
    }
}

//! Finds a spectrum under the spectra root and reads it (on a blocking thread).

use std::path::Path;

use serde::Serialize;

use crate::science::lamost::SpectrumName;
pub use crate::science::lamost::locate;
use crate::{
    error::ApiError,
    science::fits::{self, Metadata, Read},
};

/// The original's response: header fields, then `wave` (data row 2) and `flux` (data row 0).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Spectrum)]
pub struct SpectrumView {
    pub filename: String,
    #[serde(flatten)]
    pub metadata: Metadata,
    /// Wavelengths in Å.
    pub wave: Vec<f32>,
    /// Fluxes; a value that is not finite is `null`.
    #[schema(value_type = Vec<Option<f32>>)]
    pub flux: Vec<f32>,
}

pub async fn get(spectra_root: &Path, filename: &str) -> Result<SpectrumView, ApiError> {
    let name =
        SpectrumName::parse(filename).map_err(|e| ApiError::invalid("filename", e.to_string()))?;
    let path = locate(spectra_root, &name).ok_or_else(|| {
        ApiError::NotFound(format!(
            "no spectrum {} in spectra/{}/",
            name.as_str(),
            name.plan_id()
        ))
    })?;
    let read = tokio::task::spawn_blocking(move || fits::read_spectrum(&path, Read::WithMetadata))
        .await
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("the reader failed: {e}")))?;
    let s = read.map_err(|e| {
        ApiError::invalid(
            "filename",
            format!("{} is not a readable LAMOST spectrum: {e}", name.as_str()),
        )
    })?;
    Ok(SpectrumView {
        filename: s.filename,
        metadata: s.metadata.unwrap_or_default(),
        wave: s.wave,
        flux: s.flux,
    })
}

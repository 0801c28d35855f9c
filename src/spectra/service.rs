//! Finds a spectrum under the spectra root and reads it (on a blocking thread).

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::model::SpectrumName;
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

/// `spectra/<PLANID>/<name>`, or its `.gz` twin when only that exists.
pub fn locate(spectra_root: &Path, name: &SpectrumName) -> Option<PathBuf> {
    let plain = spectra_root.join(name.plan_id()).join(name.as_str());
    let gz = spectra_root
        .join(name.plan_id())
        .join(format!("{}.gz", name.as_str()));
    [plain, gz]
        .into_iter()
        .find(|p| p.symlink_metadata().is_ok())
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

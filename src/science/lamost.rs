//! A LAMOST spectrum file name, `spec-<LMJD>-<PLANID>_sp<SPID>-<FIBERID>.fits`, parsed once,
//! and where such a spectrum is under the spectra root.

use std::path::{Path, PathBuf};

/// A name that matches `^spec-\d+-[A-Za-z0-9]+_sp\d+-\d+\.fits$`; it names its plan directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpectrumName {
    name: String,
    plan_end: usize,
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error(
    "{0:?} is not a LAMOST spectrum name: expected spec-<LMJD>-<PLANID>_sp<SPID>-<FIBERID>.fits, e.g. spec-55859-F5902_sp01-001.fits"
)]
pub struct BadName(pub String);

fn digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

impl SpectrumName {
    pub fn parse(name: &str) -> Result<SpectrumName, BadName> {
        let bad = || BadName(name.chars().take(200).collect());
        let rest = name
            .strip_prefix("spec-")
            .and_then(|r| r.strip_suffix(".fits"))
            .ok_or_else(bad)?;
        let (lmjd, rest) = rest.split_once('-').ok_or_else(bad)?;
        let (plan, rest) = rest.split_once("_sp").ok_or_else(bad)?;
        let (spid, fiber) = rest.split_once('-').ok_or_else(bad)?;
        let plan_ok = !plan.is_empty() && plan.bytes().all(|b| b.is_ascii_alphanumeric());
        if !(digits(lmjd) && plan_ok && digits(spid) && digits(fiber)) {
            return Err(bad());
        }
        Ok(SpectrumName {
            name: name.to_string(),
            plan_end: "spec-".len() + lmjd.len() + 1 + plan.len(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// The plan directory: between the second dash and the underscore.
    pub fn plan_id(&self) -> &str {
        let start = self.name[5..].find('-').map_or(0, |i| i + 6);
        &self.name[start..self.plan_end]
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lamost_name_gives_its_plan_directory() {
        let n = SpectrumName::parse("spec-55859-F5902_sp01-001.fits").unwrap();
        assert_eq!(n.plan_id(), "F5902");
        assert_eq!(
            SpectrumName::parse("spec-56999-HD000000N000000B01_sp16-250.fits")
                .unwrap()
                .plan_id(),
            "HD000000N000000B01"
        );
    }

    #[test]
    fn names_off_the_pattern_are_refused() {
        for bad in [
            "",
            "spec-55859-F5902_sp01-001.fit",
            "spec-55859-F5902_sp01-001.fits.gz",
            "spec-x-F5902_sp01-001.fits",
            "spec-55859-F59/02_sp01-001.fits",
            "spec-55859-_sp01-001.fits",
            "spec-55859-F5902_sp-001.fits",
            "spec-55859-F5902_sp01-.fits",
            "spec-55859-..%2F_sp01-001.fits",
            "../spec-55859-F5902_sp01-001.fits",
            "spec-55859-F5902_sp01-001.fitsx",
        ] {
            assert!(SpectrumName::parse(bad).is_err(), "{bad:?}");
        }
    }
}

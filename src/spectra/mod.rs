//! `GET /api/spectra/{filename}`: one LAMOST spectrum of the survey under `spectra/`, with its
//! header metadata, looked up by its name as `spectra/<PLANID>/<filename>`.

pub use crate::science::lamost as model;
pub mod pages;
pub mod routes;
pub mod service;

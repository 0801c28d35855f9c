//! Labellings (SPEC §5): the researcher's answers about the spectra an ACTIVE_ML job
//! proposed. Created by the job (through the worker) or the API, labelled from the pages.

pub mod model;
pub mod routes;
pub mod service;

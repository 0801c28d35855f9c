//! mljm: machine-learning jobs over archives of astronomical spectra, with a human in the loop.
//! One binary: JSON API, htmx pages, a job queue on the database and in-process workers.

pub mod accounts;
pub mod active_learning;
pub mod app;
pub mod assets;
pub mod auth;
pub mod child;
pub mod cli;
pub mod clusters;
pub mod config;
pub mod db;
pub mod error;
pub mod files;
pub mod job_types;
pub mod jobs;
pub mod labellings;
pub mod models;
pub mod openapi;
pub mod pages;
pub mod queue;
pub mod science;
pub mod security;
pub mod slurm;
pub mod spectra;
pub mod state;
pub mod storage;
pub mod worker;

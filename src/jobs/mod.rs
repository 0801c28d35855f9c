//! Jobs: the UWS-style lifecycle (SPEC §2) behind the JSON API, the pages and the CLI.

pub mod form;
pub mod links;
pub mod model;
pub mod pages;
pub mod routes;
pub mod service;

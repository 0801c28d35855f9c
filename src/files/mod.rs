//! User storage rooted at `files/`: listing, streamed uploads, Range downloads, directories.
//! Every path goes through `crate::storage::Storage`, the one place that keeps it inside the root.

pub mod model;
pub mod pages;
pub mod routes;
pub mod service;

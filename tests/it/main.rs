//! The one integration test binary: real server, real database, real child processes.

mod accounts;
mod active;
mod browser;
mod cli;
mod cluster;
mod files;
mod helpers;
mod jobs;
mod layering;
mod models;
mod newcomer;
mod preprocessing;
mod queue;
mod readme;
mod recovery;
mod security;
mod webdriver;

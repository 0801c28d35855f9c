//! One module per job type; each is registered once in `worker::registry::Registry::new`.

pub mod active_ml;
pub mod dim_reduction;
pub mod preprocessing;
pub mod script;

//! One module per job type; each is registered once in `worker::registry::Registry::new`.

pub mod preprocessing;
pub mod script;

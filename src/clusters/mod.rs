//! The clusters as people see them: `GET /api/clusters`, the Clusters page and
//! `mljm clusters` (SPEC §8). The executor that submits and polls is `slurm`.

pub mod pages;
pub mod routes;

//! Which optional integration tests are built to run: the PostgreSQL variants when
//! `MLJM_TEST_DATABASE_URL` is set, the browser tests when `MLJM_REQUIRE_BROWSER` is, the
//! h5py reads of our files when `MLJM_TEST_PYTHON` names a python with h5py, the SLURM
//! tests when `MLJM_REQUIRE_SLURM` is (a one-node cluster runs: `bash .ci/slurm`), the MLflow
//! tracking test when `MLJM_TEST_MLFLOW` names an `mlflow` executable. Tests
//! built without them are `#[ignore]`d with the reason, so libtest counts them as skipped
//! (`ignored`), never as passed. The README's systemd unit is verified where
//! `systemd-analyze` exists (looked up once, when this script first runs).

fn main() {
    println!("cargo::rustc-check-cfg=cfg(mljm_postgres_tests)");
    println!("cargo::rustc-check-cfg=cfg(mljm_browser_tests)");
    println!("cargo::rustc-check-cfg=cfg(mljm_h5py_tests)");
    println!("cargo::rustc-check-cfg=cfg(mljm_slurm_tests)");
    println!("cargo::rustc-check-cfg=cfg(mljm_mlflow_tests)");
    println!("cargo::rerun-if-env-changed=MLJM_TEST_MLFLOW");
    println!("cargo::rerun-if-env-changed=MLJM_REQUIRE_SLURM");
    println!("cargo::rerun-if-env-changed=MLJM_TEST_PYTHON");
    println!("cargo::rerun-if-env-changed=MLJM_TEST_DATABASE_URL");
    println!("cargo::rerun-if-env-changed=MLJM_REQUIRE_BROWSER");
    println!("cargo::rustc-check-cfg=cfg(mljm_systemd_tests)");
    println!("cargo::rerun-if-changed=tests/support/build.rs");
    if std::env::var_os("MLJM_TEST_DATABASE_URL").is_some_and(|v| !v.is_empty()) {
        println!("cargo::rustc-cfg=mljm_postgres_tests");
    }
    let on_path = |tool: &str| {
        std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
    };
    if on_path("systemd-analyze") {
        println!("cargo::rustc-cfg=mljm_systemd_tests");
    }
    if std::env::var_os("MLJM_TEST_PYTHON").is_some_and(|v| !v.is_empty()) {
        println!("cargo::rustc-cfg=mljm_h5py_tests");
    }
    if std::env::var_os("MLJM_TEST_MLFLOW").is_some_and(|v| !v.is_empty()) {
        println!("cargo::rustc-cfg=mljm_mlflow_tests");
    }
    if std::env::var_os("MLJM_REQUIRE_SLURM").is_some_and(|v| !v.is_empty()) {
        println!("cargo::rustc-cfg=mljm_slurm_tests");
    }
    if std::env::var_os("MLJM_REQUIRE_BROWSER").is_some_and(|v| !v.is_empty()) {
        println!("cargo::rustc-cfg=mljm_browser_tests");
    }
}

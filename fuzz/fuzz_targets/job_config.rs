//! The job-submission body (`POST /api/jobs/submit`: type, label, description, config) and
//! the config parser of every job type: no panic, every refusal names its field, a label's
//! job directory stays one component under `/JOBS`, and every server path of an accepted
//! config resolves inside its root (the files root holds a symlink that leads out).
#![no_main]

use std::{os::unix::fs::symlink, path::PathBuf, sync::OnceLock};

use libfuzzer_sys::fuzz_target;
use mljm::{
    error::ApiError,
    job_types::{Paths, Registry},
    jobs::model::{Description, Label, job_dir_path},
};
use serde_json::Value;

#[global_allocator]
static ALLOC: mljm_fuzz::Bounded = mljm_fuzz::Bounded;

struct World {
    registry: Registry,
    paths: Paths,
    spectra: PathBuf,
    files: PathBuf,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let scratch = mljm_fuzz::scratch("config");
        let (spectra, files) = (scratch.join("spectra"), scratch.join("files"));
        std::fs::create_dir_all(spectra.join("F5902")).unwrap();
        std::fs::create_dir_all(files.join("JOBS")).unwrap();
        let _ = symlink(&scratch, files.join("out"));
        let (spectra, files) = (
            spectra.canonicalize().unwrap(),
            files.canonicalize().unwrap(),
        );
        World {
            registry: Registry::new(),
            paths: Paths::Server {
                spectra: spectra.clone(),
                files: files.clone(),
            },
            spectra,
            files,
        }
    })
}

fn names_a_field(e: &ApiError, prefix: &str) {
    match e {
        ApiError::Invalid {
            field: Some(field),
            message,
        } => {
            assert!(field.starts_with(prefix), "{field:?} for {prefix}");
            assert!(!message.is_empty());
        }
        other => panic!("a config is refused as invalid input naming a field, not {other:?}"),
    }
}

fn check_config(w: &World, job_type: &str, config: &Value) {
    let checked = w
        .registry
        .check(job_type, config, &w.paths)
        .map_err(ApiError::from);
    let _ = w.registry.unknown_keys(job_type, config);
    let Err(e) = checked else {
        let t = w.registry.get(job_type).unwrap();
        for (field, root, path) in t.paths(config) {
            let base = match root {
                mljm::job_types::Root::Spectra => &w.spectra,
                mljm::job_types::Root::Files => &w.files,
            };
            let p = w
                .paths
                .resolve(root, field, &path)
                .expect("an accepted path resolves");
            assert!(p.starts_with(base), "{field} {path:?} → {p:?}");
            assert!(!p.components().any(|c| c.as_os_str() == ".."), "{p:?}");
            assert!(p.exists(), "an accepted path exists: {p:?}");
        }
        return;
    };
    names_a_field(
        &e,
        if w.registry.get(job_type).is_some() {
            "config"
        } else {
            "type"
        },
    );
}

fuzz_target!(|data: &[u8]| {
    let Ok(body) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let w = world();
    if let Some(label) = body.get("label").and_then(Value::as_str) {
        match Label::parse(label) {
            Ok(l) => {
                let dir = job_dir_path(&l, uuid::Uuid::nil());
                let rest = dir.strip_prefix("/JOBS/job_").expect("under /JOBS");
                assert!(
                    rest.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
                    "{label:?} → {dir:?}"
                );
                assert!(!label.chars().any(char::is_control));
            }
            Err(e) => names_a_field(&e, "label"),
        }
    }
    if let Some(d) = body.get("description").and_then(Value::as_str)
        && let Err(e) = Description::parse(d)
    {
        names_a_field(&e, "description");
    }
    let config = body.get("config").unwrap_or(&body);
    if let Some(job_type) = body.get("type").and_then(Value::as_str) {
        check_config(w, job_type, config);
    }
    for job_type in w.registry.names() {
        check_config(w, job_type, config);
    }
});

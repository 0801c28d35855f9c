//! What the README tells an administrator to install holds: its systemd unit passes
//! `systemd-analyze verify`, run against the binary these tests built.

use std::path::Path;

/// The first ```ini block after `## systemd`.
fn readme_unit() -> String {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let section = &readme[readme.find("## systemd").expect("a systemd section")..];
    let start = section.find("```ini\n").expect("an ini block") + "```ini\n".len();
    section[start..][..section[start..].find("```").unwrap()].to_string()
}

#[test]
#[cfg_attr(
    not(mljm_systemd_tests),
    ignore = "systemd-analyze is not on PATH (Debian: apt-get install systemd)"
)]
fn the_readmes_systemd_unit_passes_systemd_analyze_verify() {
    let unit = readme_unit();
    assert!(
        unit.contains("ExecStart=/usr/local/bin/mljm serve"),
        "{unit}"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mljm.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/mljm", env!("CARGO_BIN_EXE_mljm")),
    )
    .unwrap();
    let out = mljm::child::no_inherit(&mut std::process::Command::new("systemd-analyze"))
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        !err.contains("mljm.service"),
        "no warning about the unit: {err}"
    );
}

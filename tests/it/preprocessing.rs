//! DATA_PREPROCESSING through the real server and through `mljm run`: parity with the original
//! pipeline's golden output, a corpus of bad files, strict mode, abort, and the spectra API.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use mljm::science::{
    demo,
    fits::{Header, write_spectrum},
    h5::read_spectra,
};
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, id, mljm, spawn_app};

crate::on_both_backends!(
    the_golden_fixture_is_reproduced_through_the_server,
    a_bad_corpus_completes_with_every_bad_file_named,
    strict_mode_fails_naming_the_first_bad_file,
    abort_in_the_middle_of_10000_files_stops_within_a_second,
    a_data_dir_path_that_leaves_the_spectra_root_is_refused,
);

pub fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/preprocessing")
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

pub fn prep_config(data_dir_path: &str) -> Value {
    json!({"data_dir_path": data_dir_path, "wave_start_point": 3800, "wave_end_point": 9000, "wave_point_count": 600})
}

async fn create_prep(app: &TestApp, config: Value) -> Value {
    let resp = app.post_job("DATA_PREPROCESSING", &config).await;
    assert_eq!(resp.status(), 201, "{:?}", resp.text().await);
    resp.json().await.unwrap()
}

/// Rows of `actual` equal those of `expected` (matched by filename) within `tol`.
pub fn assert_same_result(expected: &Path, actual: &Path, tol: f64) {
    let (mut want, mut got) = (
        read_spectra(expected).unwrap().filenames,
        read_spectra(actual).unwrap().filenames,
    );
    want.sort();
    got.sort();
    assert_eq!(want, got, "the same spectra");
    assert_rows_match(expected, actual, tol);
}

/// Every row of `expected` is in `actual` (matched by filename), equal within `tol`.
pub fn assert_rows_match(expected: &Path, actual: &Path, tol: f64) {
    let (e, a) = (
        read_spectra(expected).unwrap(),
        read_spectra(actual).unwrap(),
    );
    assert_eq!(e.wave, a.wave);
    for (i, name) in e.filenames.iter().enumerate() {
        let j = a.filenames.iter().position(|n| n == name);
        let j = j.unwrap_or_else(|| panic!("{name} is missing from {}", actual.display()));
        let worst = e
            .fluxes
            .row(i)
            .iter()
            .zip(a.fluxes.row(j))
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max);
        assert!(worst <= tol, "{name}: max |diff| {worst}");
    }
}

async fn the_golden_fixture_is_reproduced_through_the_server(b: Backend) {
    let app = spawn_app(b).await;
    copy_dir(&fixture().join("spectra"), &app.data_dir.join("spectra"));
    let job = create_prep(&app, prep_config("/")).await;
    app.run(&id(&job)).await;
    app.wait_phase(&id(&job), "COMPLETED", Duration::from_secs(30))
        .await;
    let dir = app.job_dir(&job);
    assert_same_result(
        &fixture().join("expected_result.h5"),
        &dir.join("result.h5"),
        1e-6,
    );
    // Files in sorted path order, as the original writes them.
    let ours = read_spectra(&dir.join("result.h5")).unwrap();
    assert_eq!(
        ours.filenames,
        read_spectra(&fixture().join("expected_result.h5"))
            .unwrap()
            .filenames
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("skipped.json"))
            .unwrap()
            .trim(),
        "[]"
    );
    let log = app.log(&id(&job)).await;
    assert!(log.contains("wrote 26 spectra to result.h5"), "{log}");
    // One plan directory alone.
    let job = create_prep(&app, prep_config("/F9999")).await;
    app.run(&id(&job)).await;
    app.wait_phase(&id(&job), "COMPLETED", Duration::from_secs(30))
        .await;
    let two = read_spectra(&app.job_dir(&job).join("result.h5")).unwrap();
    assert_eq!(
        two.filenames,
        [
            "spec-56999-F9999_sp01-001.fits",
            "spec-56999-F9999_sp01-002.fits"
        ]
    );
    assert!(
        two.fluxes.row(0).iter().all(|v| *v == -1.0),
        "a constant spectrum scales to -1"
    );
}

/// The FILENAMEs of the original pipeline's golden spectra (`spectra/F5000`, `spectra/F9999`).
fn golden_names() -> Vec<String> {
    read_spectra(&fixture().join("expected_result.h5"))
        .unwrap()
        .filenames
}

/// The golden spectra (with a reference result), a good spectrum with NaN and inf flux pixels,
/// and one file for every way a file can be wrong, the bad ones under `spectra/F7000/`.
/// Returns (good FILENAMEs in path order, bad file name → words its reason must contain).
pub fn bad_corpus(spectra: &Path) -> (Vec<String>, BTreeMap<String, &'static str>) {
    copy_dir(&fixture().join("spectra"), spectra);
    let golden = golden_names();
    let dir = spectra.join("F7000");
    std::fs::create_dir_all(&dir).unwrap();
    let name = |i: usize| format!("spec-57000-F7000_sp01-{i:03}.fits");
    let base = demo::synthetic(5, 0);
    let header = |filename: Option<String>| Header {
        filename,
        ..base.header.clone()
    };
    let write = |i: usize, h: Header, rows: &[Vec<f32>]| {
        write_spectrum(&dir.join(name(i)), &h, rows).unwrap()
    };
    // Path order: F5000/…, F7000/…, F9999/….
    let mut good: Vec<String> = golden
        .iter()
        .filter(|n| n.contains("F5000"))
        .cloned()
        .collect();
    // NaN and inf flux pixels in a good spectrum are dropped, the spectrum kept.
    let mut rows = demo::synthetic(5, 4).rows;
    rows[0][10] = f32::NAN;
    rows[0][11] = f32::INFINITY;
    write(4, header(Some(name(4))), &rows);
    good.push(name(4));
    good.extend(golden.iter().filter(|n| n.contains("F9999")).cloned());

    let mut bad = BTreeMap::new();
    std::fs::write(dir.join(name(10)), b"").unwrap();
    bad.insert(name(10), "empty");
    std::fs::write(dir.join(name(11)), b"filename,label\nspec-1,other\n").unwrap();
    bad.insert(name(11), "not a FITS file");
    let good_bytes = std::fs::read(spectra.join("F5000/spec-56005-F5000_sp01-020.fits")).unwrap();
    std::fs::write(dir.join(name(12)), &good_bytes[..good_bytes.len() / 2]).unwrap();
    bad.insert(name(12), "truncated");
    write(13, header(Some(name(13))), &base.rows[..3]);
    bad.insert(name(13), "shape (3, 3909)");
    write_i64_image(&dir.join(name(14)), &name(14));
    bad.insert(name(14), "64-bit integers");
    for (file, bytes, words) in header_lies(&good_bytes) {
        std::fs::write(dir.join(&file), bytes).unwrap();
        bad.insert(file, words);
    }
    write(17, header(None), &base.rows);
    bad.insert(name(17), "no FILENAME");
    let mut rows = base.rows.clone();
    rows[0] = vec![f32::NAN; rows[0].len()];
    write(18, header(Some(name(18))), &rows);
    bad.insert(name(18), "only 0 of 3909 flux pixels are finite");
    let mut rows = base.rows.clone();
    rows[2].reverse();
    write(19, header(Some(name(19))), &rows);
    bad.insert(name(19), "not strictly increasing");
    // The FILENAME of a golden spectrum in F5000, in a later file: the later one loses.
    write(
        20,
        header(Some(golden[0].clone())),
        &demo::synthetic(5, 20).rows,
    );
    bad.insert(name(20), "duplicate FILENAME");
    std::fs::create_dir(dir.join(name(21))).unwrap();
    bad.insert(name(21), "is a directory");
    (good, bad)
}

/// Files whose header promises far more than they hold, made from a good spectrum, as (file
/// name in F7000, bytes, words of the reason): a reader that believed them would allocate
/// 1.5 TB (015), 18 MB (016), 40 MB (022), or inflate 1 GiB (023, gzipped: a valid start, then
/// zeros; about 1 MiB on disk).
fn header_lies(good: &[u8]) -> Vec<(String, Vec<u8>, &'static str)> {
    let patched = |cards: &[(&str, &str)]| {
        let mut lying = good.to_vec();
        for (key, card) in cards {
            patch_card(&mut lying, key, card);
        }
        lying
    };
    // One gzip member with the header, then 1,024 members of 1 MiB of zeros each.
    let gz = |bytes: &[u8]| {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(bytes).unwrap();
        gz.finish().unwrap()
    };
    let mut bomb = gz(&good[..2880]);
    bomb.extend(gz(&vec![0u8; 1 << 20]).repeat(1024));
    let name = |i: usize| format!("spec-57000-F7000_sp01-{i:03}.fits");
    vec![
        (
            name(15),
            patched(&[("NAXIS2", "NAXIS2  =            100000000 / rows claimed")]),
            "shape (100000000, 3909)",
        ),
        (
            name(16),
            patched(&[("NAXIS1", "NAXIS1  =               900000 / pixels claimed")]),
            "truncated",
        ),
        (
            name(22),
            patched(&[
                ("BITPIX", "BITPIX  =                  -64 / float64 claimed"),
                ("NAXIS1", "NAXIS1  =              1000000 / pixels claimed"),
            ]),
            "truncated",
        ),
        (
            format!("{}.gz", name(23)),
            bomb,
            "a LAMOST spectrum is under",
        ),
    ]
}

fn patch_card(bytes: &mut [u8], key: &str, card: &str) {
    let at = bytes
        .chunks(80)
        .position(|c| c.starts_with(format!("{key:<8}").as_bytes()))
        .unwrap()
        * 80;
    bytes[at..at + 80].copy_from_slice(format!("{card:<80}").as_bytes());
}

fn write_i64_image(path: &Path, filename: &str) {
    use fitsio::{
        FitsFile,
        images::{ImageDescription, ImageType},
    };
    let desc = ImageDescription {
        data_type: ImageType::LongLong,
        dimensions: &[5, 3909],
    };
    let mut f = FitsFile::create(path)
        .with_custom_primary(&desc)
        .open()
        .unwrap();
    let hdu = f.primary_hdu().unwrap();
    hdu.write_key(&mut f, "FILENAME", filename).unwrap();
    hdu.write_image(&mut f, &vec![7i64; 5 * 3909]).unwrap();
}

async fn a_bad_corpus_completes_with_every_bad_file_named(b: Backend) {
    let app = spawn_app(b).await;
    let (good, bad) = bad_corpus(&app.data_dir.join("spectra"));
    let job = create_prep(&app, prep_config("/")).await;
    app.run(&id(&job)).await;
    app.wait_phase(&id(&job), "COMPLETED", Duration::from_secs(30))
        .await;
    let dir = app.job_dir(&job);
    let result = read_spectra(&dir.join("result.h5")).unwrap();
    assert_eq!(
        result.filenames, good,
        "exactly the good spectra, in path order"
    );
    assert!(
        result
            .fluxes
            .iter()
            .all(|v| v.is_finite() && v.abs() <= 1.0 + 1e-12),
        "no NaN reaches result.h5"
    );
    // The good files the original pipeline ran on come out as it wrote them.
    assert_rows_match(
        &fixture().join("expected_result.h5"),
        &dir.join("result.h5"),
        1e-6,
    );
    let skipped: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("skipped.json")).unwrap()).unwrap();
    let reasons: BTreeMap<String, String> = skipped
        .iter()
        .map(|s| {
            (
                s["file"]
                    .as_str()
                    .unwrap()
                    .trim_start_matches("F7000/")
                    .to_string(),
                s["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        reasons.keys().collect::<Vec<_>>(),
        bad.keys().collect::<Vec<_>>(),
        "{reasons:#?}"
    );
    for (file, words) in &bad {
        assert!(
            reasons[file].contains(words),
            "{file}: {:?} should say {words:?}",
            reasons[file]
        );
    }
    let log = app.log(&id(&job)).await;
    // Counted per file (SPEC §10), and in the total.
    assert!(
        log.contains("F7000/spec-57000-F7000_sp01-004.fits: 2 non-finite flux pixel(s) dropped"),
        "{log}"
    );
    assert!(
        log.contains("2 non-finite flux pixel(s) dropped from 1 file(s)"),
        "{log}"
    );
    assert_eq!(
        log.matches("skipped F7000/").count(),
        bad.len(),
        "one log line per bad file"
    );

    // The spectra API: each bad file is a 422 with its reason, a good one its data.
    for (file, words) in &bad {
        if *words == "duplicate FILENAME" {
            continue; // a readable spectrum in itself
        }
        // The API finds a `.fits.gz` file by its `.fits` name.
        let resp = app
            .get(&format!("/api/spectra/{}", file.trim_end_matches(".gz")))
            .await;
        assert_eq!(resp.status(), 422, "{file}");
        let body: Value = resp.json().await.unwrap();
        assert!(
            body["message"].as_str().unwrap().contains(words) || *words == "is a directory",
            "{file}: {body}"
        );
    }
    let synthetic = good.iter().find(|n| n.contains("F7000")).unwrap();
    let resp = app.get(&format!("/api/spectra/{synthetic}")).await;
    assert_eq!(resp.status(), 200);
    let s: Value = resp.json().await.unwrap();
    assert_eq!(s["filename"], synthetic.as_str());
    assert_eq!(s["type"], "STAR");
    assert_eq!(
        (
            s["wave"].as_array().unwrap().len(),
            s["flux"].as_array().unwrap().len()
        ),
        (3909, 3909)
    );
    assert!(
        s["ra"].is_f64() && s["mag_7"].is_f64() && s["sn_r"].is_f64() && s["z_err"].is_f64(),
        "{}",
        s["ra"]
    );
    assert!(s["targetname"].as_str().unwrap().starts_with("LAMOST J"));
    let resp = app.get("/api/spectra/spec-57000-F7000_sp09-999.fits").await;
    assert_eq!(resp.status(), 404);
    assert!(resp.text().await.unwrap().contains("spectra/F7000/"));
    for name in [
        "notaspectrum.fits",
        "spec-57000-F7000_sp01-001.fit",
        "spec-1-..%2F..%2Fetc_sp01-001.fits",
    ] {
        let resp = app.get(&format!("/api/spectra/{name}")).await;
        assert_eq!(resp.status(), 422, "{name}");
        assert!(
            resp.text()
                .await
                .unwrap()
                .contains("spec-<LMJD>-<PLANID>_sp<SPID>-<FIBERID>.fits")
        );
    }
}

async fn strict_mode_fails_naming_the_first_bad_file(b: Backend) {
    let app = spawn_app(b).await;
    bad_corpus(&app.data_dir.join("spectra"));
    let mut config = prep_config("/");
    config["strict"] = json!(true);
    let job = create_prep(&app, config).await;
    app.run(&id(&job)).await;
    let job = app
        .wait_phase(&id(&job), "ERROR", Duration::from_secs(30))
        .await;
    let error = job["error"].as_str().unwrap();
    assert!(
        error.contains("F7000/spec-57000-F7000_sp01-010.fits: the file is empty"),
        "{error}"
    );
    let dir = app.job_dir(&job);
    assert!(!dir.join("result.h5").exists() && !dir.join("result.h5.partial").exists());
}

/// `n` copies of one synthetic spectrum with their own FILENAME, written fast: the FITS bytes
/// are patched rather than regenerated.
pub fn many_spectra(spectra: &Path, n: usize) {
    let tmp = spectra.join("template.fits");
    std::fs::create_dir_all(spectra).unwrap();
    let s = demo::synthetic(3, 0);
    let mut h = s.header.clone();
    h.filename = Some("spec-50000-F0000_sp00-000.fits".into());
    write_spectrum(&tmp, &h, &s.rows).unwrap();
    let template = std::fs::read(&tmp).unwrap();
    std::fs::remove_file(&tmp).unwrap();
    let at = template
        .windows(30)
        .position(|w| w == b"spec-50000-F0000_sp00-000.fits")
        .unwrap();
    for i in 0..n {
        let plan = format!("F{}", 1000 + i / 1000);
        let name = format!("spec-50000-{plan}_sp00-{:03}.fits", i % 1000);
        let mut bytes = template.clone();
        bytes[at..at + 30].copy_from_slice(name.as_bytes());
        std::fs::create_dir_all(spectra.join(&plan)).unwrap();
        std::fs::write(spectra.join(&plan).join(&name), bytes).unwrap();
    }
}

async fn abort_in_the_middle_of_10000_files_stops_within_a_second(b: Backend) {
    let app = spawn_app(b).await;
    many_spectra(&app.data_dir.join("spectra"), 10_000);
    // On a fast machine the whole run can end before the ABORT reaches it: such a try proves
    // nothing and is made again; the test fails unless one ABORT lands mid-run.
    for attempt in 1..=3 {
        let job = create_prep(&app, prep_config("/")).await;
        let jid = id(&job);
        app.run(&jid).await;
        // The file count is logged when the walk is done and reading starts.
        app.wait_log(&jid, "10000 FITS files under", Duration::from_secs(30))
            .await;
        let resp = app.post(&format!("/api/jobs/{jid}/process/ABORT")).await;
        assert_eq!(
            resp.status(),
            202,
            "the job was still running: {:?}",
            resp.text().await
        );
        let aborted = Instant::now();
        let dir = app.job_dir(&job);
        // The job stops within a second of the ABORT.
        let log = app
            .wait_log(&jid, "result discarded", Duration::from_secs(1))
            .await;
        assert_eq!(app.job(&jid).await["phase"], "ABORTED");
        if log.contains("wrote 10000 spectra") {
            eprintln!("try {attempt}: the run had ended before the ABORT reached it");
            continue;
        }
        eprintln!("preprocessing stopped {:?} after ABORT", aborted.elapsed());
        assert!(
            !dir.join("result.h5").exists(),
            "no result.h5 after an abort"
        );
        assert!(
            !dir.join("result.h5.partial").exists(),
            "the partial file is removed"
        );
        return;
    }
    panic!("in three tries the ABORT never landed mid-run");
}

async fn a_data_dir_path_that_leaves_the_spectra_root_is_refused(b: Backend) {
    let app = spawn_app(b).await;
    for bad in ["/../files", "../..", "/F1/../../etc"] {
        let resp = app.post_job("DATA_PREPROCESSING", &prep_config(bad)).await;
        assert_eq!(resp.status(), 422, "{bad}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["field"], "config.data_dir_path");
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("would leave the spectra root"),
            "{body}"
        );
    }
    let mut config = prep_config("/");
    config["wave_point_count"] = json!(100_001);
    let resp = app.post_job("DATA_PREPROCESSING", &config).await;
    assert_eq!(resp.status(), 422);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["field"], "config.wave_point_count");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("from 2 to 100000")
    );
    // A directory that is not there: a 422 at create naming the field and the path, and at
    // RUN when it went away after create; the job stays PENDING.
    let resp = app
        .post_job("DATA_PREPROCESSING", &prep_config("/nowhere"))
        .await;
    assert_eq!(resp.status(), 422);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["field"], "config.data_dir_path");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("\"/nowhere\": no such file or directory in the spectra root"),
        "{body}"
    );
    let plan = app.data_dir.join("spectra/F1");
    std::fs::create_dir_all(&plan).unwrap();
    let job = create_prep(&app, prep_config("/F1")).await;
    std::fs::remove_dir(&plan).unwrap();
    let resp = app
        .post(&format!("/api/jobs/{}/process/RUN", id(&job)))
        .await;
    assert_eq!(resp.status(), 422);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["field"], "config.data_dir_path", "{body}");
    assert_eq!(app.job(&id(&job)).await["phase"], "PENDING");
}

/// Files whose headers claim 1.5 TB, 18 MB and 40 MB of data, and a gzip stream of 1 GiB, cost a
/// `mljm run` no more memory than the 64 MiB a file may have: each is skipped with its reason.
#[test]
fn a_header_that_lies_costs_no_more_memory_than_the_file_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let good = fixture().join("spectra/F5000/spec-56005-F5000_sp01-020.fits");
    let good_bytes = std::fs::read(&good).unwrap();
    let run = |name: &str, lies: &[(String, Vec<u8>, &str)]| {
        let dir = tmp.path().join(name);
        std::fs::create_dir_all(dir.join("spectra/F7000")).unwrap();
        std::fs::copy(
            &good,
            dir.join("spectra/F7000").join(good.file_name().unwrap()),
        )
        .unwrap();
        for (file, bytes, _) in lies {
            std::fs::write(dir.join("spectra/F7000").join(file), bytes).unwrap();
        }
        let config = prep_config(dir.join("spectra").to_str().unwrap());
        std::fs::write(dir.join("prep.json"), config.to_string()).unwrap();
        let (code, _, peak) = crate::helpers::run_peak_rss(
            mljm::child::no_inherit(&mut std::process::Command::new(env!("CARGO_BIN_EXE_mljm")))
                .args(["run", "DATA_PREPROCESSING", "--config"])
                .arg(dir.join("prep.json"))
                .arg("--out")
                .arg(dir.join("out")),
            &dir.join("stderr.log"),
        );
        let log = std::fs::read_to_string(dir.join("stderr.log")).unwrap();
        assert_eq!(code, 0, "{log}");
        let result = read_spectra(&dir.join("out/result.h5")).unwrap();
        assert_eq!(result.filenames, ["spec-56005-F5000_sp01-020.fits"]);
        let skipped = std::fs::read_to_string(dir.join("out/skipped.json")).unwrap();
        (peak, serde_json::from_str::<Vec<Value>>(&skipped).unwrap())
    };
    let (honest, none) = run("honest", &[]);
    assert!(none.is_empty());
    let lies = header_lies(&good_bytes);
    let (lying, skipped) = run("lying", &lies);
    let reasons: Vec<&str> = skipped
        .iter()
        .map(|s| s["reason"].as_str().unwrap())
        .collect();
    for (_, _, words) in &lies {
        assert!(
            reasons.iter().any(|r| r.contains(words)),
            "{words}: {reasons:?}"
        );
    }
    eprintln!("peak RSS: {honest:.1} MiB with the good file alone, {lying:.1} MiB with the lies");
    // At most the 64 MiB a (gunzipped) file may have and the decoder's own state: far from
    // the gigabytes claimed.
    let limit = (mljm::science::fits::MAX_FILE_BYTES >> 20) as f64 + 32.0;
    assert!(
        lying - honest < limit,
        "{lying:.1} MiB against {honest:.1} MiB"
    );
}

/// `mljm run` with the original's config file, as it is: paths relative to its folder.
#[tokio::test]
async fn mljm_run_reproduces_the_golden_fixture_from_the_originals_config() {
    let out = tempfile::tempdir().unwrap();
    let config = fixture().join("prep_config.json");
    let run = |job_type: &str, config: &Path, out: &Path| {
        let (config, out) = (config.to_str().unwrap(), out.to_str().unwrap());
        mljm(["run", job_type, "--config", config, "--out", out])
    };
    let o = run("DATA_PREPROCESSING", &config, out.path());
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(
        err.contains("COMPLETED") && !err.contains('\u{1b}'),
        "plain lines when not on a terminal: {err}"
    );
    assert_same_result(
        &fixture().join("expected_result.h5"),
        &out.path().join("result.h5"),
        1e-6,
    );
    assert!(
        std::fs::read_to_string(out.path().join("log.txt"))
            .unwrap()
            .contains("wrote 26 spectra")
    );

    // Written by us, read the way h5py reads it: names and dtypes of the original.
    let f = hdf5::File::open(out.path().join("result.h5")).unwrap();
    use hdf5::types::{FloatSize, TypeDescriptor};
    assert_eq!(
        crate::helpers::h5_type(&f, "fluxes"),
        TypeDescriptor::Float(FloatSize::U8)
    );
    assert_eq!(
        crate::helpers::h5_type(&f, "wave"),
        TypeDescriptor::Float(FloatSize::U8)
    );
    assert_eq!(
        crate::helpers::h5_type(&f, "filenames"),
        TypeDescriptor::VarLenUnicode
    );
    assert_eq!(f.dataset("fluxes").unwrap().shape(), vec![26, 600]);

    // Bad usage is exit status 2 with the field named; a failed run is 1 with the reason.
    let bad_cfg = out.path().join("bad.json");
    std::fs::write(&bad_cfg, r#"{"data_dir_path": ".", "wave_start_point": 9000, "wave_end_point": 3800, "wave_point_count": 600}"#).unwrap();
    let o = run("DATA_PREPROCESSING", &bad_cfg, &out.path().join("b"));
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("wave_end_point"));
    let o = run("NO_SUCH_TYPE", &bad_cfg, Path::new("x"));
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("DATA_PREPROCESSING"));
    let empty = tempfile::tempdir().unwrap();
    let cfg = empty.path().join("prep.json");
    std::fs::write(&cfg, prep_config("nothing-here").to_string()).unwrap();
    std::fs::create_dir(empty.path().join("nothing-here")).unwrap();
    let o = run("DATA_PREPROCESSING", &cfg, &empty.path().join("o"));
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no .fits or .fits.gz files under"));
}

/// The h5py-written training set of the original reads, labels included.
#[test]
fn an_h5py_training_set_reads_with_its_labels() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/active_ml/training_data.h5");
    let set = read_spectra(&path).unwrap();
    let labels = set.labels.unwrap();
    assert_eq!(labels.len(), set.filenames.len());
    assert_eq!(set.fluxes.ncols(), set.wave.len());
    assert!(labels.iter().all(|l| (0..3).contains(l)));
}

/// `mljm demo` writes a survey that preprocesses completely, with the config it writes.
#[tokio::test]
async fn mljm_demo_data_preprocesses_with_its_own_config() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let succeeds = |o: std::process::Output| {
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert_eq!(o.status.code(), Some(0), "{err}");
    };
    let d = data.to_str().unwrap();
    succeeds(mljm(["demo", "--n", "300", "--seed", "4", "--data-dir", d]));
    let labels = std::fs::read_to_string(data.join("files/labels.csv")).unwrap();
    assert_eq!(labels.lines().count(), 301);
    for class in demo::CLASSES {
        assert!(
            labels.contains(&format!(",{class}\n")),
            "{class} is represented"
        );
    }
    let (config, out) = (data.join("files/prep_config.json"), tmp.path().join("out"));
    succeeds(mljm([
        "run",
        "DATA_PREPROCESSING",
        "--data-dir",
        d,
        "--config",
        config.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]));
    let set = read_spectra(&tmp.path().join("out/result.h5")).unwrap();
    assert_eq!(set.fluxes.dim(), (300, 600));
    let first_label_file = labels.lines().nth(1).unwrap().split(',').next().unwrap();
    assert!(set.filenames.iter().any(|f| f == first_label_file));
}

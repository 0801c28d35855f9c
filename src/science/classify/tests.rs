use super::*;
use crate::science::demo;

/// A model with random weights on the H-alpha grid, saved as an iteration would.
fn random_model(dir: &Path) -> Model {
    random_model_seeing(dir, Features::default())
}

fn random_model_seeing(dir: &Path, features: Features) -> Model {
    let card = Card {
        classes: demo::CLASSES.iter().map(|c| c.to_string()).collect(),
        candidate_classes: vec!["single peak".into(), "double peak".into()],
        wave_start: 6519.0,
        wave_end: 6732.0,
        wave_count: 140,
        training_size: 0,
        iteration: 1,
        features,
        metrics: serde_json::Value::Null,
    };
    let cnn = Cnn::new(140, 3, &Device::Cpu, 3).unwrap();
    cnn.save(&dir.join(WEIGHTS)).unwrap();
    card.write(dir).unwrap();
    Model::load(dir, &Device::Cpu).unwrap()
}

/// A model trained on lines carries that in its card: loaded alone (as CLASSIFY and online
/// inference load it) it predicts what the same weights predict on the transformed rows.
#[test]
fn a_model_card_carries_what_the_network_sees() {
    let tmp = tempfile::tempdir().unwrap();
    let model = random_model_seeing(tmp.path(), Features::Lines);
    assert_eq!(model.card.features, Features::Lines);
    assert_eq!(model.cnn.features(), Features::Lines);
    let card: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tmp.path().join("model.json")).unwrap()).unwrap();
    assert_eq!(card["features"], "lines");
    let rows: Vec<Vec<f64>> = (0..5)
        .map(|k| {
            (0..140)
                .map(|i| ((i * (k + 3)) as f64 * 0.07).sin() + if i == 70 { 3.0 } else { 0.0 })
                .collect()
        })
        .collect();
    let refs: Vec<&[f64]> = rows.iter().map(Vec::as_slice).collect();
    let seen = model.cnn.predict(&refs, 4, &Cancel::new()).unwrap();
    let plain = Cnn::load(&tmp.path().join(WEIGHTS), 140, 3, &Device::Cpu).unwrap();
    let mut lines = rows.clone();
    lines
        .iter_mut()
        .for_each(|r| crate::science::features::lines(r));
    let lrefs: Vec<&[f64]> = lines.iter().map(Vec::as_slice).collect();
    assert_eq!(seen, plain.predict(&lrefs, 4, &Cancel::new()).unwrap());
    assert_ne!(seen, plain.predict(&refs, 4, &Cancel::new()).unwrap());
}

fn options(input: Input) -> Options<'static> {
    Options {
        input,
        candidate_classes: vec![0, 1, 2],
        min_probability: 0.0,
        batch: 64,
        locate: None,
    }
}

/// A repeated FILENAME loses in path order, as preprocessing drops it: one row, one
/// catalogue entry, and the reason in skipped.json.
#[test]
fn a_repeated_filename_is_classified_once() {
    let tmp = tempfile::tempdir().unwrap();
    let (survey, out, model_dir) = (
        tmp.path().join("s"),
        tmp.path().join("o"),
        tmp.path().join("m"),
    );
    for d in [&survey, &out, &model_dir] {
        std::fs::create_dir_all(d).unwrap();
    }
    let labels = demo::write_survey(&survey, 30, 5, &Cancel::new(), &Progress::new()).unwrap();
    let first = demo::synthetic(5, 0);
    let copy = survey.join("zz").join("copy.fits");
    std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
    std::fs::copy(survey.join(&first.relative_path), &copy).unwrap();
    let model = random_model(&model_dir);
    let report = classify(
        &model,
        &options(Input::Directory(survey.clone())),
        &out,
        &Cancel::new(),
        &Progress::new(),
        &|_| {},
    )
    .unwrap();
    assert_eq!(
        (report.spectra, report.candidates, report.skipped),
        (30, 30, 1)
    );
    let skipped: Vec<Skipped> =
        serde_json::from_slice(&std::fs::read(out.join("skipped.json")).unwrap()).unwrap();
    assert_eq!(skipped[0].file, "zz/copy.fits");
    assert!(
        skipped[0].reason.contains("duplicate FILENAME"),
        "{skipped:?}"
    );
    let f = hdf5::File::open(out.join("predictions.h5")).unwrap();
    let names: Vec<hdf5::types::VarLenUnicode> =
        f.dataset("filenames").unwrap().read_raw().unwrap();
    let mut names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut want: Vec<String> = labels.iter().map(|(n, _)| n.clone()).collect();
    names.sort();
    want.sort();
    assert_eq!(names, want);
    let csv = std::fs::read_to_string(out.join("candidates.csv")).unwrap();
    assert_eq!(csv.lines().count(), 31, "a header and one row each");
    let vot = std::fs::read_to_string(out.join("candidates.vot")).unwrap();
    assert_eq!(vot.matches("<TR>").count(), 30);
    assert!(
        vot.contains(r#"name="ra""#) && vot.contains(r#"unit="deg""#),
        "{vot:.2000}"
    );
}

/// An aborted run leaves no result, not even a partial one; the next run starts cleanly.
#[test]
fn a_cancelled_run_leaves_no_result_and_a_rerun_replaces_everything() {
    let tmp = tempfile::tempdir().unwrap();
    let (survey, out, model_dir) = (
        tmp.path().join("s"),
        tmp.path().join("o"),
        tmp.path().join("m"),
    );
    for d in [&survey, &out, &model_dir] {
        std::fs::create_dir_all(d).unwrap();
    }
    demo::write_survey(&survey, 20, 6, &Cancel::new(), &Progress::new()).unwrap();
    let model = random_model(&model_dir);
    // What a crashed attempt left: half files under both names.
    for name in OUTPUTS {
        std::fs::write(out.join(name), b"stale").unwrap();
        std::fs::write(partial(&out, name), b"half").unwrap();
    }
    let cancel = Cancel::new();
    cancel.cancel();
    let opts = options(Input::Directory(survey.clone()));
    assert!(classify(&model, &opts, &out, &cancel, &Progress::new(), &|_| {}).is_err());
    let left: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    assert!(
        left.iter()
            .all(|n| !OUTPUTS.iter().any(|o| n.starts_with(o))),
        "{left:?}"
    );
    let report = classify(
        &model,
        &opts,
        &out,
        &Cancel::new(),
        &Progress::new(),
        &|_| {},
    )
    .unwrap();
    assert_eq!(report.spectra, 20);
    assert!(
        std::fs::read(out.join("predictions.h5"))
            .unwrap()
            .starts_with(b"\x89HDF")
    );
}

/// A pool on another grid than the model's is refused, naming both grids.
#[test]
fn a_pool_on_another_grid_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let model = random_model(tmp.path());
    let pool = tmp.path().join("pool.h5");
    demo::write_pool(
        &pool,
        10,
        100,
        1,
        &Cancel::new(),
        &Progress::new(),
        |_, _| Ok(()),
    )
    .unwrap();
    let e = classify(
        &model,
        &options(Input::Pool(pool)),
        tmp.path(),
        &Cancel::new(),
        &Progress::new(),
        &|_| {},
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("100 points") && e.contains("140 points"), "{e}");
}

use super::*;

#[test]
fn linspace_ends_exactly_at_its_end_points() {
    let g = linspace(3800.0, 9000.0, 600);
    assert_eq!((g.len(), g[0], g[599]), (600, 3800.0, 9000.0));
    assert!((g[1] - g[0] - 5200.0 / 599.0).abs() < 1e-9);
}

#[test]
fn interp_takes_end_values_outside_and_is_linear_inside() {
    let (xp, fp) = ([1.0f32, 2.0, 4.0], [10.0f32, 20.0, 0.0]);
    let grid = [0.0, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0];
    let mut out = [0.0; 7];
    interp(&grid, &xp, &fp, &mut out);
    assert_eq!(out, [10.0, 10.0, 15.0, 20.0, 10.0, 0.0, 0.0]);
}

#[test]
fn a_constant_spectrum_scales_to_all_minus_one() {
    let mut row = [5.0, 5.0, 5.0];
    minmax_scale(&mut row);
    assert_eq!(row, [-1.0, -1.0, -1.0]);
    let mut row = [1.0, 2.0, 3.0];
    minmax_scale(&mut row);
    assert_eq!(row, [-1.0, 0.0, 1.0]);
}

#[test]
fn non_finite_flux_pixels_are_dropped_with_their_wavelengths() {
    let s = fits::Spectrum {
        filename: "x".into(),
        metadata: None,
        wave: vec![1.0, 2.0, 3.0, 4.0],
        flux: vec![0.0, f32::NAN, 2.0, f32::INFINITY],
    };
    let row = resample(s, &[1.0, 2.0, 3.0, 4.0]);
    assert_eq!(row.dropped, 2);
    assert_eq!(row.flux, vec![-1.0, 0.0, 1.0, 1.0]);
    assert!(row.flux.iter().all(|v| v.is_finite()));
}

#[test]
fn the_walk_is_in_pythons_sorted_path_order() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for p in [
        "a/z.fits",
        "a-b/a.fits",
        "a/b/c.fits.gz",
        "b.fits",
        "notes.txt",
    ] {
        std::fs::create_dir_all(d.join(p).parent().unwrap()).unwrap();
        std::fs::write(d.join(p), b"").unwrap();
    }
    std::fs::create_dir_all(d.join("c.fits")).unwrap();
    std::os::unix::fs::symlink(d, d.join("a/loop")).unwrap();
    let names: Vec<String> = SortedWalk::new(d)
        .map(|f| match f {
            Found::File(p) => p.strip_prefix(d).unwrap().display().to_string(),
            Found::Bad(p, r) => format!("bad {} ({r})", p.strip_prefix(d).unwrap().display()),
        })
        .collect();
    assert_eq!(
        names,
        [
            "a/b/c.fits.gz",
            "a/z.fits",
            "a-b/a.fits",
            "b.fits",
            "bad c.fits (is a directory, not a FITS file)"
        ]
    );
}

#[test]
fn a_later_duplicate_filename_is_skipped_and_the_rows_after_it_move_up() {
    use crate::science::{demo, fits::write_spectrum, h5::read_spectra};
    let dir = tempfile::tempdir().unwrap();
    let spectra: Vec<_> = (0..8).map(|i| demo::synthetic(3, i)).collect();
    let write_all = |data: &Path, skip_dups: bool| {
        std::fs::create_dir_all(data).unwrap();
        for (i, s) in spectra.iter().enumerate() {
            let mut header = s.header.clone();
            // Files 2 and 5 carry the FILENAMEs of files 0 and 3.
            match i {
                2 | 5 if skip_dups => continue,
                2 | 5 => header.filename = Some(spectra[i - 2].filename.clone()),
                _ => {}
            }
            write_spectrum(&data.join(format!("f{i}.fits")), &header, &s.rows).unwrap();
        }
    };
    let run = |data: &Path, out: &Path, strict: bool| {
        std::fs::create_dir_all(out).unwrap();
        let opts = Options {
            data_dir: data.to_path_buf(),
            grid: linspace(4000.0, 8000.0, 50),
            strict,
        };
        preprocess(&opts, out, &Cancel::new(), &Progress::new(), &|_| {})
    };
    let (with, without) = (dir.path().join("with"), dir.path().join("without"));
    write_all(&with, false);
    write_all(&without, true);
    let report = run(&with, &dir.path().join("a"), false).unwrap();
    assert_eq!((report.files, report.spectra, report.skipped), (8, 6, 2));
    run(&without, &dir.path().join("b"), false).unwrap();
    let got = read_spectra(&dir.path().join("a/result.h5")).unwrap();
    let expected = read_spectra(&dir.path().join("b/result.h5")).unwrap();
    let names: Vec<&str> = [0, 1, 3, 4, 6, 7]
        .iter()
        .map(|&i| spectra[i].filename.as_str())
        .collect();
    assert_eq!(got.filenames, names);
    assert_eq!(got, expected, "as if the duplicates had never been there");
    let skipped: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("a/skipped.json")).unwrap())
            .unwrap();
    assert_eq!(skipped[0]["file"], "f2.fits");
    assert_eq!(skipped[1]["file"], "f5.fits");
    // Rows of the first holders in the final file: f0 is row 0, f3 is row 2.
    assert!(
        skipped[0]["reason"]
            .as_str()
            .unwrap()
            .ends_with("(row 0 of result.h5)")
    );
    assert!(
        skipped[1]["reason"]
            .as_str()
            .unwrap()
            .ends_with("(row 2 of result.h5)")
    );

    // Strict: the first bad file in path order is the duplicate f2, even though the
    // duplicate is only known once a later file (f6, truncated) has failed.
    std::fs::write(with.join("f6.fits"), b"SIMPLE  =").unwrap();
    match run(&with, &dir.path().join("c"), true) {
        Err(PreprocessError::Strict { file, reason }) => {
            assert_eq!(file, "f2.fits");
            assert!(reason.contains("duplicate FILENAME"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    std::fs::remove_file(with.join("f6.fits")).unwrap();
    assert!(matches!(
        run(&with, &dir.path().join("d"), true),
        Err(PreprocessError::Strict { file, .. }) if file == "f2.fits"
    ));
    assert!(!dir.path().join("d/result.h5").exists());
}

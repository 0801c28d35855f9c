use super::*;

fn good_rows(pixels: usize) -> Vec<Vec<f32>> {
    let wave: Vec<f32> = (0..pixels).map(|i| 3700.0 + i as f32 * 1.5).collect();
    let flux: Vec<f32> = (0..pixels)
        .map(|i| 100.0 + (i as f32 * 0.01).sin())
        .collect();
    vec![
        flux,
        vec![1.0; pixels],
        wave,
        vec![0.0; pixels],
        vec![0.0; pixels],
    ]
}

fn write(dir: &Path, name: &str, header: Header, rows: &[Vec<f32>]) -> std::path::PathBuf {
    let p = dir.join(name);
    write_spectrum(&p, &header, rows).unwrap();
    p
}

fn named(name: &str) -> Header {
    Header {
        filename: Some(name.into()),
        ..Default::default()
    }
}

#[test]
fn a_written_spectrum_reads_back_with_its_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = named("spec-1-F1_sp01-001.fits");
    h.strings.push(("DESIG", "LAMOST J1".into()));
    h.numbers.push(("RA", 12.5));
    let p = write(dir.path(), "a.fits", h, &good_rows(100));
    let s = read_spectrum(&p, Read::WithMetadata).unwrap();
    assert_eq!(s.filename, "spec-1-F1_sp01-001.fits");
    assert_eq!(s.wave.len(), 100);
    assert_eq!(s.wave[1], 3701.5);
    let m = s.metadata.unwrap();
    assert_eq!(m.targetname.as_deref(), Some("LAMOST J1"));
    assert_eq!(m.ra, Some(12.5));
    assert_eq!(m.dec, None);
}

#[test]
fn a_gzipped_spectrum_reads_like_the_plain_one() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "a.fits", named("x"), &good_rows(50));
    let plain = std::fs::read(&p).unwrap();
    let gz = dir.path().join("a.fits.gz");
    let mut enc = flate2::write::GzEncoder::new(
        std::fs::File::create(&gz).unwrap(),
        flate2::Compression::fast(),
    );
    std::io::Write::write_all(&mut enc, &plain).unwrap();
    enc.finish().unwrap();
    assert_eq!(
        read_spectrum(&gz, Read::Data).unwrap(),
        read_spectrum(&p, Read::Data).unwrap()
    );
}

#[test]
fn every_malformed_file_has_its_own_reason() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let good = write(d, "good.fits", named("g"), &good_rows(200));
    let bytes = std::fs::read(&good).unwrap();

    std::fs::write(d.join("empty.fits"), b"").unwrap();
    assert_eq!(
        read_spectrum(&d.join("empty.fits"), Read::Data),
        Err(SpectrumError::Empty)
    );
    std::fs::write(d.join("text.fits"), b"filename,label\n").unwrap();
    assert_eq!(
        read_spectrum(&d.join("text.fits"), Read::Data),
        Err(SpectrumError::NotFits)
    );
    std::fs::write(d.join("short.fits"), &bytes[..4000]).unwrap();
    assert!(matches!(
        read_spectrum(&d.join("short.fits"), Read::Data),
        Err(SpectrumError::Truncated { .. })
    ));
    std::fs::write(d.join("half-header.fits"), &bytes[..1000]).unwrap();
    assert!(matches!(
        read_spectrum(&d.join("half-header.fits"), Read::Data),
        Err(SpectrumError::Truncated { .. } | SpectrumError::BadHeader(_))
    ));

    let rows3 = good_rows(200)[..3].to_vec();
    let p = write(d, "shape.fits", named("s"), &rows3);
    assert_eq!(
        read_spectrum(&p, Read::Data),
        Err(SpectrumError::Shape("(3, 200)".into()))
    );
    let p = write(d, "noname.fits", Header::default(), &good_rows(200));
    assert_eq!(
        read_spectrum(&p, Read::Data),
        Err(SpectrumError::MissingFilename)
    );

    let mut rows = good_rows(200);
    rows[0] = vec![f32::NAN; 200];
    rows[0][7] = 1.0;
    let p = write(d, "nan.fits", named("n"), &rows);
    assert_eq!(
        read_spectrum(&p, Read::Data),
        Err(SpectrumError::TooFewFlux {
            finite: 1,
            pixels: 200
        })
    );

    let mut rows = good_rows(200);
    rows[2].reverse();
    let p = write(d, "decreasing.fits", named("d"), &rows);
    assert!(matches!(
        read_spectrum(&p, Read::Data),
        Err(SpectrumError::WaveNotIncreasing { pixel: 1, .. })
    ));
    let mut rows = good_rows(200);
    rows[2][5] = f32::INFINITY;
    let p = write(d, "inf.fits", named("i"), &rows);
    assert_eq!(
        read_spectrum(&p, Read::Data),
        Err(SpectrumError::WaveNotFinite { pixel: 5 })
    );

    std::fs::create_dir(d.join("dir.fits")).unwrap();
    assert_eq!(
        read_spectrum(&d.join("dir.fits"), Read::Data),
        Err(SpectrumError::Directory)
    );
}

#[test]
fn a_header_claiming_a_huge_image_is_refused_before_allocating() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(dir.path(), "g.fits", named("g"), &good_rows(200));
    let mut bytes = std::fs::read(&good).unwrap();
    let card = bytes
        .chunks(80)
        .position(|c| c.starts_with(b"NAXIS1 "))
        .unwrap();
    let lie = format!("{:<80}", "NAXIS1  =               900000 / lie");
    bytes[card * 80..card * 80 + 80].copy_from_slice(lie.as_bytes());
    assert!(matches!(
        parse_spectrum(&bytes, Read::Data),
        Err(SpectrumError::Truncated { .. })
    ));
    let lie = format!("{:<80}", "NAXIS1  =           9000000000 / lie");
    bytes[card * 80..card * 80 + 80].copy_from_slice(lie.as_bytes());
    assert_eq!(
        parse_spectrum(&bytes, Read::Data),
        Err(SpectrumError::Pixels {
            pixels: 9_000_000_000
        })
    );
}

/// A card whose keyword is binary (a fuzzer's find, on which cfitsio's reason varied from one
/// read to the next) is refused by our own check, with one reason that names the card.
#[test]
fn a_header_card_that_is_not_text_is_refused_naming_it() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/fits");
    let odd = std::fs::read(corpus.join("binary-keyword")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("odd.fits"), &odd).unwrap();
    let want = "the FITS header cannot be read: header card 3 (bytes 160–239): its keyword holds a byte that is not printable ASCII";
    for _ in 0..2 {
        let e = parse_spectrum(&odd, Read::WithMetadata).unwrap_err();
        assert_eq!(e.to_string(), want);
        let e = read_spectrum(&dir.path().join("odd.fits"), Read::WithMetadata).unwrap_err();
        assert_eq!(e.to_string(), want);
    }
    let mut control = std::fs::read(write(
        dir.path(),
        "c.fits",
        named("spec-1-F1_sp01-001.fits"),
        &good_rows(100),
    ))
    .unwrap();
    control[80 * 2 + 40] = b'\t';
    let e = parse_spectrum(&control, Read::WithMetadata).unwrap_err();
    assert_eq!(
        e.to_string(),
        "the FITS header cannot be read: header card 3 (bytes 160–239): it holds a control character"
    );
}

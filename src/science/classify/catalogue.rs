//! The candidate catalogue: candidates logged to disk as they are found (one JSON line each),
//! then written out as CSV and as a VOTable 1.4 in one streamed pass, without the rows of
//! spectra found to be duplicates at the end.

use std::{
    collections::HashSet,
    fs::File,
    io::{BufRead, BufReader, BufWriter, Write},
    path::{Path, PathBuf},
};

use anyhow::{Context, anyhow};
use serde::{Deserialize, Serialize};
use votable::{
    TableDataContent,
    data::Data,
    datatype::Datatype,
    error::VOTableError,
    field::{ArraySize, Field},
    impls::{TableSchema, VOTableValue, mem::InMemTableDataRows},
    info::Info,
    resource::{Resource, ResourceSubElem},
    table::{Table, TableElem},
    votable::{VOTable, Version},
};

use crate::science::fits::Metadata;

/// One spectrum predicted as a candidate class with at least the minimum probability.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// Its row in `predictions.h5`.
    pub row: u64,
    pub filename: String,
    pub designation: Option<String>,
    /// Degrees.
    pub ra: Option<f64>,
    pub dec: Option<f64>,
    pub observed_at: Option<String>,
    pub class: String,
    pub probability: f64,
    pub entropy: f64,
}

impl Candidate {
    pub fn new(
        row: u64,
        filename: &str,
        meta: Option<&Metadata>,
        class: &str,
        probability: f64,
        entropy: f64,
    ) -> Candidate {
        Candidate {
            row,
            filename: filename.to_string(),
            designation: meta.and_then(|m| m.targetname.clone()),
            ra: meta.and_then(|m| m.ra),
            dec: meta.and_then(|m| m.dec),
            observed_at: meta.and_then(|m| m.observed_at.clone()),
            class: class.to_string(),
            probability,
            entropy,
        }
    }

    fn csv_record(&self) -> [String; 8] {
        let num = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
        [
            self.filename.clone(),
            self.designation.clone().unwrap_or_default(),
            num(self.ra),
            num(self.dec),
            self.observed_at.clone().unwrap_or_default(),
            self.class.clone(),
            self.probability.to_string(),
            self.entropy.to_string(),
        ]
    }

    fn vot_row(&self) -> Vec<VOTableValue> {
        let text = |v: &Option<String>| match v {
            Some(s) => VOTableValue::String(s.clone()),
            None => VOTableValue::Null,
        };
        let num = |v: Option<f64>| v.map_or(VOTableValue::Null, VOTableValue::Double);
        vec![
            VOTableValue::String(self.filename.clone()),
            text(&self.designation),
            num(self.ra),
            num(self.dec),
            text(&self.observed_at),
            VOTableValue::String(self.class.clone()),
            VOTableValue::Double(self.probability),
            VOTableValue::Double(self.entropy),
        ]
    }
}

const COLUMNS: [&str; 8] = [
    "filename",
    "designation",
    "ra",
    "dec",
    "observed_at",
    "class",
    "probability",
    "entropy",
];

/// Candidates as they are found, on disk.
pub struct CandidateLog {
    path: PathBuf,
    out: BufWriter<File>,
}

impl CandidateLog {
    pub fn create(path: &Path) -> anyhow::Result<CandidateLog> {
        let file =
            File::create(path).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(CandidateLog {
            path: path.to_path_buf(),
            out: BufWriter::new(file),
        })
    }

    pub fn push(&mut self, c: &Candidate) -> anyhow::Result<()> {
        serde_json::to_writer(&mut self.out, c)?;
        self.out.write_all(b"\n")?;
        Ok(())
    }

    /// Writes `csv` and `vot` from the log, leaving out the rows in `removed`; returns how
    /// many candidates they hold. The log is deleted.
    pub fn finish(
        mut self,
        csv_path: &Path,
        vot_path: &Path,
        removed: &HashSet<u64>,
        description: &str,
    ) -> anyhow::Result<usize> {
        self.out.flush()?;
        drop(self.out);
        let mut csv = csv::Writer::from_path(csv_path)
            .with_context(|| format!("cannot write {}", csv_path.display()))?;
        csv.write_record(COLUMNS)?;
        let mut count = 0;
        for c in read_log(&self.path)? {
            let c = c?;
            if !removed.contains(&c.row) {
                csv.write_record(c.csv_record())?;
                count += 1;
            }
        }
        csv.flush()?;
        write_votable(&self.path, removed, vot_path, count, description)?;
        let _ = std::fs::remove_file(&self.path);
        Ok(count)
    }
}

fn read_log(path: &Path) -> anyhow::Result<impl Iterator<Item = anyhow::Result<Candidate>>> {
    let file = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(BufReader::new(file).lines().map(|line| {
        let line = line?;
        serde_json::from_str(&line).map_err(|e| anyhow!("the candidate log: {e}"))
    }))
}

/// The VOTable's rows, read from the candidate log as the crate writes TABLEDATA, so the
/// catalogue is never held in memory.
#[derive(Default, PartialEq, Serialize)]
struct StreamedRows {
    #[serde(skip)]
    log: PathBuf,
    #[serde(skip)]
    removed: HashSet<u64>,
}

/// What the catalogue's rows answer to anything but writing them as TABLEDATA.
fn write_only() -> Result<(), VOTableError> {
    Err(VOTableError::Custom(
        "the catalogue's rows are only written, as TABLEDATA".into(),
    ))
}

/// Rows handed to the crate's TABLEDATA writer at a time.
const ROWS_AT_ONCE: usize = 4096;

impl TableDataContent for StreamedRows {
    fn ensures_consistency(&mut self, _context: &[TableElem]) -> Result<(), String> {
        Ok(())
    }

    fn read_datatable_content<R: BufRead>(
        &mut self,
        _reader: &mut quick_xml::Reader<R>,
        _reader_buff: &mut Vec<u8>,
        _context: &[TableElem],
    ) -> Result<(), VOTableError> {
        write_only()
    }

    fn read_binary_content<R: BufRead>(
        &mut self,
        _reader: &mut quick_xml::Reader<R>,
        _reader_buff: &mut Vec<u8>,
        _context: &[TableElem],
    ) -> Result<(), VOTableError> {
        write_only()
    }

    fn read_binary2_content<R: BufRead>(
        &mut self,
        _reader: &mut quick_xml::Reader<R>,
        _reader_buff: &mut Vec<u8>,
        _context: &[TableElem],
    ) -> Result<(), VOTableError> {
        write_only()
    }

    fn write_in_datatable<W: Write>(
        &mut self,
        writer: &mut quick_xml::Writer<W>,
        context: &[TableElem],
    ) -> Result<(), VOTableError> {
        let custom = |e: anyhow::Error| VOTableError::Custom(format!("{e:#}"));
        let mut rows = read_log(&self.log).map_err(custom)?;
        loop {
            let mut chunk = Vec::with_capacity(ROWS_AT_ONCE);
            for c in rows.by_ref() {
                let c = c.map_err(custom)?;
                if !self.removed.contains(&c.row) {
                    chunk.push(c.vot_row());
                }
                if chunk.len() == ROWS_AT_ONCE {
                    break;
                }
            }
            if chunk.is_empty() {
                return Ok(());
            }
            InMemTableDataRows::write_tabledata_rows(
                writer,
                chunk.iter(),
                TableSchema::from(context),
            )?;
        }
    }

    fn write_in_binary<W: Write>(
        &mut self,
        _writer: &mut quick_xml::Writer<W>,
        _context: &[TableElem],
    ) -> Result<(), VOTableError> {
        write_only()
    }

    fn write_in_binary2<W: Write>(
        &mut self,
        _writer: &mut quick_xml::Writer<W>,
        _context: &[TableElem],
    ) -> Result<(), VOTableError> {
        write_only()
    }
}

fn text_field(name: &str, ucd: &str, description: &str) -> Field {
    Field::new(name, Datatype::CharUnicode)
        .set_arraysize(ArraySize::new_variable_1d())
        .set_ucd(ucd)
        .set_description(description.into())
}

fn number_field(name: &str, ucd: &str, unit: Option<&str>, description: &str) -> Field {
    let f = Field::new(name, Datatype::Double)
        .set_ucd(ucd)
        .set_description(description.into());
    match unit {
        Some(u) => f.set_unit(u),
        None => f,
    }
}

fn write_votable(
    log: &Path,
    removed: &HashSet<u64>,
    path: &Path,
    count: usize,
    description: &str,
) -> anyhow::Result<()> {
    let rows = StreamedRows {
        log: log.to_path_buf(),
        removed: removed.clone(),
    };
    let table = Table::new()
        .set_name("candidates")
        .set_description(description.into())
        .push_field(text_field(
            "filename",
            "meta.id;meta.file",
            "FILENAME of the LAMOST spectrum",
        ))
        .push_field(text_field(
            "designation",
            "meta.id;meta.main",
            "DESIG: the LAMOST designation",
        ))
        .push_field(number_field(
            "ra",
            "pos.eq.ra;meta.main",
            Some("deg"),
            "RA of the fibre (FITS header)",
        ))
        .push_field(number_field(
            "dec",
            "pos.eq.dec;meta.main",
            Some("deg"),
            "DEC of the fibre (FITS header)",
        ))
        .push_field(text_field(
            "observed_at",
            "time.epoch;obs",
            "DATE-OBS: when the spectrum was observed",
        ))
        .push_field(text_field("class", "src.class", "the predicted class"))
        .push_field(number_field(
            "probability",
            "stat.probability",
            None,
            "the model's probability of the predicted class",
        ))
        .push_field(number_field(
            "entropy",
            "stat.value",
            None,
            "entropy of the class probabilities (natural log)",
        ))
        .set_data(Data::new_empty().set_tabledata(rows));
    let resource = Resource::default().set_name("mljm").push_sub_elem(
        ResourceSubElem::from_table(table).push_info(Info::new("rows", count.to_string())),
    );
    let mut votable = VOTable::new(Version::V1_4, resource).wrap();
    votable
        .to_ivoa_xml_file(path)
        .map_err(|e| anyhow!("cannot write {}: {e}", path.display()))
}

//! `musubi export pdf` / `musubi export csv`: the 認定調査票 printed as on the official form,
//! and one CSV row per survey. The rendering is in `musubi_engine::export` (pure, bytes
//! out); this module loads the documents and writes the file atomically: a temp file in
//! the target directory, fsync, rename — never half a file, nothing at all on refusal.

use std::collections::HashSet;
use std::path::Path;

use anyhow::Result;
use clap::{Subcommand, ValueEnum};
use musubi_engine::Engine;
use musubi_engine::export::Labels;
use musubi_engine::export::csv::{Encoding, export_csv_with_cases};
use musubi_engine::export::pdf::{PdfLayout, export_pdf_with_layout, export_plan_request_pdf};
use musubi_engine::fsutil::{self, Existing};
use musubi_engine::schema::DocKind;
use std::path::PathBuf;

use crate::common::{InputError, parse_id};

/// IPAexGothic (IPA Font License, see app/assets/fonts/), embedded as a subset in PDFs.
pub const FONT: &[u8] = include_bytes!("../assets/fonts/ipaexg.ttf");

#[derive(Subcommand, Debug)]
pub enum ExportCommand {
    /// 認定調査票 (or a 居宅サービス計画作成依頼（変更）届出書) as PDF: A4, in the layout of
    /// the official form, Japanese font embedded.
    Pdf {
        /// The survey's (or the notice's) document id.
        id: String,
        /// Where to write the PDF.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// official: as the form prints it (default); numbered: musubi's earlier layout
        /// with numbered choices and the 連番 〔1〕…〔74〕.
        #[arg(long, value_enum, default_value = "official")]
        layout: LayoutArg,
        /// Replace FILE if it already exists.
        #[arg(long)]
        force: bool,
    },
    /// Surveys as CSV, one row each (every survey in the store when no ID is given);
    /// columns as in docs/csv-layout.md.
    Csv {
        /// Survey document ids, in the order of the rows.
        ids: Vec<String>,
        /// Where to write the CSV.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Character encoding: utf-8 (with BOM) or shift_jis (refuses characters it
        /// cannot hold, writing nothing).
        #[arg(long, value_enum, default_value = "utf-8")]
        encoding: CsvEncoding,
        /// Replace FILE if it already exists.
        #[arg(long)]
        force: bool,
    },
}

/// `--layout` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LayoutArg {
    /// The official form.
    Official,
    /// musubi's numbered layout.
    Numbered,
}

/// `--encoding` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CsvEncoding {
    /// UTF-8 with a byte-order mark.
    #[value(name = "utf-8", alias = "utf8")]
    Utf8,
    /// Shift_JIS (Windows-31J).
    #[value(name = "shift_jis", alias = "sjis", alias = "cp932")]
    ShiftJis,
}

/// Runs one export command; `open` opens the store.
pub fn run(cmd: ExportCommand, open: impl FnOnce() -> Result<Engine>) -> Result<()> {
    match cmd {
        ExportCommand::Pdf {
            id,
            out,
            layout,
            force,
        } => {
            let id = parse_id(&id)?;
            refuse_existing(&out, force)?;
            let engine = open()?;
            let json = engine.export(id)?;
            // A 居宅サービス計画作成依頼届出書 prints its person from the subject document.
            let subject = if json.get("kind").and_then(|k| k.as_str())
                == Some(DocKind::PlanRequest.as_str())
            {
                let subject_id = json
                    .get("subject_id")
                    .and_then(|s| s.as_str())
                    .unwrap_or_default();
                let subject_id = parse_id(subject_id).map_err(|_| {
                    InputError(format!(
                        "{id}: subject_id（被保険者）が文書IDではありません"
                    ))
                })?;
                Some(engine.export(subject_id).map_err(|e| {
                    InputError(format!(
                        "{id}: 被保険者の文書 {subject_id} を読めません（{e}）"
                    ))
                })?)
            } else {
                None
            };
            engine.close()?;
            let labels = Labels::embedded()?;
            let layout = match layout {
                LayoutArg::Official => PdfLayout::Official,
                LayoutArg::Numbered => PdfLayout::Numbered,
            };
            let pdf = match &subject {
                Some(subject) => {
                    export_plan_request_pdf(&labels, &id.to_string(), &json, subject, FONT)?
                }
                None => export_pdf_with_layout(&labels, &id.to_string(), &json, FONT, layout)?,
            };
            write_atomically(&out, &pdf.bytes, force)?;
            if pdf.substituted_chars > 0 {
                eprintln!(
                    "warning: {} characters are not in the font and were printed as 〓",
                    pdf.substituted_chars
                );
            }
            eprintln!(
                "PDFを書き出しました (PDF written): {} A4 pages, {} bytes, {}",
                pdf.pages,
                pdf.bytes.len(),
                out.display()
            );
            Ok(())
        }
        ExportCommand::Csv {
            ids,
            out,
            encoding,
            force,
        } => {
            let mut wanted = Vec::with_capacity(ids.len());
            let mut seen = HashSet::new();
            for s in &ids {
                let id = parse_id(s)?;
                if seen.insert(id) {
                    wanted.push(id);
                }
            }
            refuse_existing(&out, force)?;
            let engine = open()?;
            if wanted.is_empty() {
                let mut all: Vec<_> = engine
                    .list()?
                    .into_iter()
                    .filter(|d| d.kind == "survey")
                    .collect();
                all.sort_by_key(|d| (d.created_at, d.id));
                wanted = all.into_iter().map(|d| d.id).collect();
            }
            let mut docs = Vec::with_capacity(wanted.len());
            for id in wanted {
                docs.push((id.to_string(), engine.export(id)?));
            }
            // The cases the surveys belong to, for the case columns at the end of a row.
            let mut cases = std::collections::HashMap::new();
            for (_, d) in &docs {
                let Some(cid) = d.get("case_id").and_then(|c| c.as_str()) else {
                    continue;
                };
                if cases.contains_key(cid) {
                    continue;
                }
                let Ok(case_id) = cid.parse::<musubi_engine::ids::DocId>() else {
                    continue;
                };
                if let Ok(c) = engine.export(case_id)
                    && c.get("kind").and_then(|k| k.as_str()) == Some("case")
                {
                    cases.insert(cid.to_owned(), c);
                }
            }
            engine.close()?;
            let labels = Labels::embedded()?;
            let enc = match encoding {
                CsvEncoding::Utf8 => Encoding::Utf8,
                CsvEncoding::ShiftJis => Encoding::ShiftJis,
            };
            let bytes = export_csv_with_cases(&labels, &docs, &cases, enc)?;
            write_atomically(&out, &bytes, force)?;
            eprintln!(
                "CSVを書き出しました (CSV written): {} surveys, {}, {}",
                docs.len(),
                enc.name(),
                out.display()
            );
            Ok(())
        }
    }
}

fn refuse_existing(out: &Path, force: bool) -> Result<()> {
    if !force && out.exists() {
        return Err(InputError(format!(
            "{} already exists; choose another file or add --force to replace it",
            out.display()
        ))
        .into());
    }
    Ok(())
}

/// Writes `bytes` to `out` with the durable write (`musubi_engine::fsutil`), without
/// replacing an existing file unless `force`. Nothing is left behind on failure.
fn write_atomically(out: &Path, bytes: &[u8], force: bool) -> Result<()> {
    let existing = if force {
        Existing::Replace
    } else {
        Existing::Refuse
    };
    fsutil::write_file(out, bytes, existing).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            anyhow::Error::new(InputError(format!(
                "{} already exists; choose another file or add --force to replace it",
                out.display()
            )))
        } else {
            anyhow::Error::new(e).context(format!("writing {}", out.display()))
        }
    })
}

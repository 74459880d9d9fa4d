//! `musubi export pdf` / `musubi export csv`: the 認定調査票 printed as on the official form,
//! and one CSV row per survey. The documents are loaded and rendered by
//! `musubi_app::office` (the same code as the app's 書き出し screen); the file is written
//! atomically: a temp file in the target directory, fsync, rename — never half a file,
//! nothing at all on refusal.

use std::path::Path;
use std::path::PathBuf;

use anyhow::Result;
use clap::{Subcommand, ValueEnum};
use musubi_app::office;
use musubi_engine::Engine;
use musubi_engine::export::csv::Encoding;
use musubi_engine::export::pdf::PdfLayout;

use crate::common::{office_error, parse_id};

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
            let layout = match layout {
                LayoutArg::Official => PdfLayout::Official,
                LayoutArg::Numbered => PdfLayout::Numbered,
            };
            let pdf = office::pdf(&engine, id, layout).map_err(office_error)?;
            engine.close()?;
            office::write_new_file(&out, &pdf.bytes, force).map_err(office_error)?;
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
            let wanted = ids
                .iter()
                .map(|s| parse_id(s))
                .collect::<Result<Vec<_>>>()?;
            refuse_existing(&out, force)?;
            let engine = open()?;
            let enc = match encoding {
                CsvEncoding::Utf8 => Encoding::Utf8,
                CsvEncoding::ShiftJis => Encoding::ShiftJis,
            };
            let (bytes, rows) = office::csv(&engine, &wanted, enc).map_err(office_error)?;
            engine.close()?;
            office::write_new_file(&out, &bytes, force).map_err(office_error)?;
            eprintln!(
                "CSVを書き出しました (CSV written): {rows} surveys, {}, {}",
                enc.name(),
                out.display()
            );
            Ok(())
        }
    }
}

fn refuse_existing(out: &Path, force: bool) -> Result<()> {
    if !force && out.exists() {
        return Err(office_error(office::exists(out)));
    }
    Ok(())
}

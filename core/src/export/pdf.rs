//! The 認定調査票 as PDF, in the order and layout of the official form: 概況調査
//! (Ⅰ–Ⅳ), 基本調査 (every item with every option; the chosen ones printed as circled
//! numbers ①②… on a grey ground, as the surveyor circles the number on paper), 日常生活自立度
//! and the 特記事項 sheets. A4 portrait. [`PdfLayout::Official`] (the default) writes the
//! choices the form prints without numbers as words with the chosen one circled;
//! [`PdfLayout::Numbered`] keeps musubi's earlier numbered layout. The Japanese font is embedded as a subset (only the
//! glyphs the document uses) in a CID-keyed Type0 font with a ToUnicode map, so text can
//! be searched and extracted.
//!
//! Layout is done first into pages of drawing operations ([`Op`]); then the glyphs are
//! collected, the font subset is built and the PDF objects are written. The same layout
//! prints the 居宅サービス計画作成依頼（変更）届出書 ([`export_plan_request_pdf`]).

use super::{ExportError, Labels, ServiceKind, age_on, at, ensure_survey, era_date, str_at};
use crate::schema::{Item, ItemKind};
use pdf_writer::types::{CidFontType, FontFlags, SystemInfo};
use pdf_writer::{Content, Filter, Finish, Name, Pdf, Rect, Ref, Str, TextStr};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

mod plan_request;
pub use plan_request::export_plan_request_pdf;

/// A4 in points.
const PAGE_W: f32 = 595.276;
const PAGE_H: f32 = 841.89;
const MARGIN_L: f32 = 36.0;
const MARGIN_R: f32 = 36.0;
const MARGIN_T: f32 = 36.0;
const MARGIN_B: f32 = 40.0;
const CONTENT_W: f32 = PAGE_W - MARGIN_L - MARGIN_R;

/// Printed for a character the font has no glyph for (the geta mark, the traditional
/// stand-in for an unavailable character in Japanese typesetting).
const SUBSTITUTE: char = '〓';

/// Font name in the PDF (subset tag + PostScript name).
const FONT_NAME: &[u8] = b"MSBIAA+IPAexGothic";

/// A finished PDF.
#[derive(Debug)]
pub struct PdfOutput {
    /// The file.
    pub bytes: Vec<u8>,
    /// Number of A4 pages.
    pub pages: usize,
    /// Characters the font could not show, printed as 〓.
    pub substituted_chars: usize,
}

/// Which layout to print.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PdfLayout {
    /// The official form (the default): choices written as on paper — 「自宅内・自宅外（ ）」,
    /// 「非該当・要支援（ ）・要介護（ ）」, 自立・Ｊ1・Ｊ2… — with the chosen one circled,
    /// check boxes □/■ for 施設等利用, one free-text box for 概況調査Ⅳ, 「調査日」 in the
    /// header of the 基本調査 and 特記事項 pages and the item list under each 特記事項
    /// heading; none of musubi's own numbers.
    #[default]
    Official,
    /// musubi's earlier layout: every coded field as numbered choices (musubi's own
    /// numbering where the form has none), the 連番 〔1〕…〔74〕 after each item, and
    /// 概況調査Ⅳ as one titled row per field.
    Numbered,
}

/// One drawing operation on a page (PDF coordinates, origin bottom left, points).
#[derive(Clone, Debug, PartialEq)]
enum Op {
    Text {
        x: f32,
        y: f32,
        size: f32,
        gray: f32,
        text: String,
    },
    Fill {
        x: f32,
        y: f32,
        w: f32,
        h: f32,
        gray: f32,
    },
    Stroke {
        x: f32,
        y: f32,
        w: f32,
        h: f32,
        width: f32,
        gray: f32,
    },
    Line {
        x1: f32,
        y1: f32,
        x2: f32,
        y2: f32,
        width: f32,
        gray: f32,
    },
    /// An ellipse inscribed in the rectangle (the circle a surveyor draws round a choice).
    Ellipse {
        x: f32,
        y: f32,
        w: f32,
        h: f32,
        width: f32,
    },
}

/// Advance widths from the font.
struct Metrics<'f> {
    face: ttf_parser::Face<'f>,
    upem: f32,
}

impl<'f> Metrics<'f> {
    fn new(font: &'f [u8]) -> Result<Metrics<'f>, ExportError> {
        let face = ttf_parser::Face::parse(font, 0)
            .map_err(|e| ExportError::Font(format!("not a usable TrueType/OpenType font ({e})")))?;
        let upem = f32::from(face.units_per_em());
        if face.glyph_index('あ').is_none() {
            return Err(ExportError::Font(
                "the font has no Japanese glyphs".to_owned(),
            ));
        }
        Ok(Metrics { face, upem })
    }

    fn glyph(&self, c: char) -> Option<u16> {
        self.face.glyph_index(c).map(|g| g.0)
    }

    /// The glyph printed for `c` (its own, else the substitute, else .notdef).
    fn glyph_or_substitute(&self, c: char) -> u16 {
        self.glyph(c)
            .or_else(|| self.glyph(SUBSTITUTE))
            .unwrap_or(0)
    }

    /// Advance of a glyph in 1/1000 em.
    fn advance_1000(&self, gid: u16) -> f32 {
        let adv = self
            .face
            .glyph_hor_advance(ttf_parser::GlyphId(gid))
            .map(f32::from)
            .unwrap_or(self.upem);
        adv * 1000.0 / self.upem
    }

    fn width(&self, s: &str, size: f32) -> f32 {
        s.chars()
            .map(|c| self.advance_1000(self.glyph_or_substitute(c)))
            .sum::<f32>()
            * size
            / 1000.0
    }

    /// Wraps text into lines no wider than `width` (character by character, as Japanese is
    /// set; closing punctuation may hang into the margin rather than start a line).
    fn wrap(&self, text: &str, width: f32, size: f32) -> Vec<String> {
        const NO_LINE_START: &str = "、。，．,.）)」』】〕］]｝}〉》・：；:;！？!?ーぁぃぅぇぉっゃゅょゎァィゥェォッャュョヮヵヶ々";
        let mut lines = Vec::new();
        for para in text.split('\n') {
            let mut line = String::new();
            let mut w = 0.0;
            // Byte offset in `line` where the current run of ASCII letters, digits and
            // signs (a phone number, a word) started: such runs move to the next line
            // whole rather than break in the middle.
            let mut run_start: Option<usize> = None;
            for ch in para.chars() {
                let ch = match ch {
                    '\t' => ' ',
                    c if c.is_control() => continue,
                    c => c,
                };
                let in_run = ch.is_ascii_graphic();
                if !in_run {
                    run_start = None;
                } else if run_start.is_none() {
                    run_start = Some(line.len());
                }
                let cw = self.advance_1000(self.glyph_or_substitute(ch)) * size / 1000.0;
                if w + cw > width && !line.is_empty() && !NO_LINE_START.contains(ch) {
                    let carry = match run_start {
                        Some(start) if in_run && start > 0 => line.split_off(start),
                        _ => String::new(),
                    };
                    lines.push(std::mem::take(&mut line));
                    w = self.width(&carry, size);
                    run_start = in_run.then_some(0);
                    line = carry;
                }
                line.push(ch);
                w += cw;
            }
            lines.push(line);
        }
        lines
    }
}

/// A piece of text placed on a line of a block.
#[derive(Clone, Debug)]
struct Span {
    dx: f32,
    text: String,
    chosen: bool,
    circled: bool,
    gray: f32,
}

/// An option or a label inside a flow of options.
#[derive(Clone, Debug)]
struct Tok {
    text: String,
    chosen: bool,
    /// Drawn with a circle round it (official layout).
    circled: bool,
    gray: f32,
    break_before: bool,
    /// Set directly after the previous token, without a gap.
    tight: bool,
}

impl Tok {
    fn option(code: i64, label: &str, chosen: bool) -> Tok {
        let text = if chosen {
            format!("{}{label}", circled(code))
        } else {
            format!("{code}.{label}")
        };
        Tok {
            text,
            chosen,
            circled: false,
            gray: 0.0,
            break_before: false,
            tight: false,
        }
    }

    fn plain(text: impl Into<String>, gray: f32) -> Tok {
        Tok {
            text: text.into(),
            chosen: false,
            circled: false,
            gray,
            break_before: false,
            tight: false,
        }
    }

    /// A choice written as a word, circled when chosen (official layout).
    fn word(text: impl Into<String>, chosen: bool) -> Tok {
        Tok {
            circled: chosen,
            ..Tok::plain(text, 0.0)
        }
    }

    fn tight(mut self) -> Tok {
        self.tight = true;
        self
    }
}

/// Words separated by 「・」 as the form prints a list of choices.
fn words(list: Vec<(String, bool)>) -> Vec<Tok> {
    let mut toks = Vec::with_capacity(list.len() * 2);
    for (i, (text, chosen)) in list.into_iter().enumerate() {
        let w = Tok::word(text, chosen);
        if i > 0 {
            toks.push(Tok::plain("・", 0.0).tight());
            toks.push(w.tight());
        } else {
            toks.push(w);
        }
    }
    toks
}

/// ①… for 1–20, else (n).
fn circled(n: i64) -> String {
    match u32::try_from(n) {
        Ok(k @ 1..=20) => char::from_u32(0x2460 + k - 1)
            .map(String::from)
            .unwrap_or_else(|| format!("({n})")),
        _ => format!("({n})"),
    }
}

/// Label and body of a table row.
enum Body {
    Text(String),
    Tokens(Vec<Tok>),
}

struct Layout<'m, 'f> {
    m: &'m Metrics<'f>,
    pages: Vec<Vec<Op>>,
    y: f32,
    part: String,
    ident: String,
    layout: PdfLayout,
    /// 「調査日 …」 printed in the header of the current part (official layout).
    date_line: Option<String>,
}

const SIZE: f32 = 8.5;
const LEADING: f32 = 11.5;
const PAD: f32 = 3.0;
const UNANSWERED: &str = "（未回答）";

impl<'m, 'f> Layout<'m, 'f> {
    fn ops(&mut self) -> &mut Vec<Op> {
        if self.pages.is_empty() {
            self.pages.push(Vec::new());
        }
        let last = self.pages.len() - 1;
        &mut self.pages[last]
    }

    fn text(&mut self, x: f32, y: f32, size: f32, gray: f32, text: &str) {
        if !text.is_empty() {
            self.ops().push(Op::Text {
                x,
                y,
                size,
                gray,
                text: text.to_owned(),
            });
        }
    }

    fn start_part(&mut self, part: &str) {
        part.clone_into(&mut self.part);
        self.new_page();
    }

    fn new_page(&mut self) {
        self.pages.push(Vec::new());
        let top = PAGE_H - MARGIN_T;
        let part = self.part.clone();
        let ident = self.ident.clone();
        self.text(MARGIN_L, top - 13.0, 13.0, 0.0, &part);
        let right = match &self.date_line {
            Some(d) => format!("{d}　　{ident}"),
            None => ident,
        };
        let w = self.m.width(&right, 9.0);
        self.text(PAGE_W - MARGIN_R - w, top - 12.0, 9.0, 0.0, &right);
        self.ops().push(Op::Line {
            x1: MARGIN_L,
            y1: top - 18.0,
            x2: PAGE_W - MARGIN_R,
            y2: top - 18.0,
            width: 0.8,
            gray: 0.0,
        });
        self.y = top - 26.0;
    }

    fn ensure(&mut self, h: f32) {
        if self.y - h < MARGIN_B {
            self.new_page();
        }
    }

    fn heading(&mut self, text: &str) {
        // Keep a heading with at least two rows after it.
        self.ensure(18.0 + 3.0 * LEADING);
        let y = self.y;
        self.ops().push(Op::Fill {
            x: MARGIN_L,
            y: y - 15.0,
            w: CONTENT_W,
            h: 15.0,
            gray: 0.85,
        });
        self.text(MARGIN_L + 4.0, y - 11.0, 10.0, 0.0, text);
        self.y -= 17.0;
    }

    fn subheading(&mut self, text: &str) {
        self.ensure(14.0 + 2.0 * LEADING);
        let y = self.y;
        self.text(MARGIN_L + 2.0, y - 10.0, 9.0, 0.0, text);
        self.ops().push(Op::Line {
            x1: MARGIN_L,
            y1: y - 13.0,
            x2: PAGE_W - MARGIN_R,
            y2: y - 13.0,
            width: 0.4,
            gray: 0.3,
        });
        self.y -= 15.0;
    }

    fn flow(&self, toks: &[Tok], width: f32, size: f32) -> Vec<Vec<Span>> {
        let gap = size * 1.1;
        let mut lines: Vec<Vec<Span>> = vec![Vec::new()];
        let mut x = 0.0;
        for t in toks {
            let w = self.m.width(&t.text, size);
            let line_empty = lines.last().is_none_or(Vec::is_empty);
            if t.tight && !line_empty {
                // Close up to the previous token, leaving room for a circle's edge.
                x -= gap - 1.5;
            }
            if !line_empty && (t.break_before || x + w > width) {
                lines.push(Vec::new());
                x = 0.0;
            }
            let pieces = if w > width {
                self.m.wrap(&t.text, width, size)
            } else {
                vec![t.text.clone()]
            };
            for (i, piece) in pieces.into_iter().enumerate() {
                if i > 0 {
                    lines.push(Vec::new());
                    x = 0.0;
                }
                let pw = self.m.width(&piece, size);
                if let Some(line) = lines.last_mut() {
                    line.push(Span {
                        dx: x,
                        text: piece,
                        chosen: t.chosen,
                        circled: t.circled,
                        gray: t.gray,
                    });
                }
                x += pw + gap;
            }
        }
        lines
    }

    fn paragraph_lines(&self, text: &str, width: f32, size: f32) -> Vec<Vec<Span>> {
        self.m
            .wrap(text, width, size)
            .into_iter()
            .map(|t| {
                vec![Span {
                    dx: 0.0,
                    text: t,
                    chosen: false,
                    circled: false,
                    gray: 0.0,
                }]
            })
            .collect()
    }

    /// A table row: a label cell on a grey ground and a body. Rows are never split across
    /// pages unless one is taller than a page, in which case it continues on the next.
    fn row(&mut self, label: &str, label_w: f32, body: Body) {
        let body_w = CONTENT_W - label_w - 2.0 * PAD;
        let label_lines = self.paragraph_lines(label, label_w - 2.0 * PAD, SIZE);
        let body_lines = match body {
            Body::Text(t) => self.paragraph_lines(&t, body_w, SIZE),
            Body::Tokens(toks) => self.flow(&toks, body_w, SIZE),
        };
        let n = label_lines.len().max(body_lines.len()).max(1);
        let max_lines = ((PAGE_H - MARGIN_T - 26.0 - MARGIN_B - 2.0 * PAD) / LEADING) as usize;
        let mut start = 0;
        while start < n {
            let take = (n - start).min(max_lines.max(1));
            let h = take as f32 * LEADING + 2.0 * PAD;
            self.ensure(h);
            let top = self.y;
            self.ops().push(Op::Fill {
                x: MARGIN_L,
                y: top - h,
                w: label_w,
                h,
                gray: 0.94,
            });
            for i in 0..take {
                let base = top - PAD - SIZE - i as f32 * LEADING + 1.0;
                if let Some(spans) = label_lines.get(start + i) {
                    for s in spans {
                        self.text(MARGIN_L + PAD + s.dx, base, SIZE, s.gray, &s.text);
                    }
                }
                if let Some(spans) = body_lines.get(start + i) {
                    for s in spans {
                        let x = MARGIN_L + label_w + PAD + s.dx;
                        if s.chosen {
                            let w = self.m.width(&s.text, SIZE);
                            self.ops().push(Op::Fill {
                                x: x - 1.5,
                                y: base - 2.6,
                                w: w + 3.0,
                                h: SIZE + 3.2,
                                gray: 0.78,
                            });
                        }
                        if s.circled {
                            let w = self.m.width(&s.text, SIZE);
                            self.ops().push(Op::Ellipse {
                                x: x - 2.0,
                                y: base - 3.4,
                                w: w + 4.0,
                                h: SIZE + 5.0,
                                width: 0.7,
                            });
                        }
                        self.text(x, base, SIZE, s.gray, &s.text);
                    }
                }
            }
            self.ops().push(Op::Line {
                x1: MARGIN_L,
                y1: top - h,
                x2: PAGE_W - MARGIN_R,
                y2: top - h,
                width: 0.3,
                gray: 0.55,
            });
            self.y -= h;
            start += take;
        }
    }

    fn official(&self) -> bool {
        self.layout == PdfLayout::Official
    }

    /// A free-text box over the full width, at least `min_lines` high; continues on the
    /// next page when it does not fit.
    fn boxed(&mut self, text: &str, min_lines: usize) {
        let lines = self.m.wrap(text, CONTENT_W - 4.0 * PAD, SIZE);
        let n = lines.len().max(min_lines);
        let max_lines = ((PAGE_H - MARGIN_T - 26.0 - MARGIN_B - 4.0 * PAD) / LEADING) as usize;
        let mut start = 0;
        while start < n {
            let take = (n - start).min(max_lines.max(1));
            let h = take as f32 * LEADING + 2.0 * PAD;
            self.ensure(h + 2.0);
            let top = self.y - 2.0;
            self.ops().push(Op::Stroke {
                x: MARGIN_L,
                y: top - h,
                w: CONTENT_W,
                h,
                width: 0.6,
                gray: 0.0,
            });
            for i in 0..take {
                let base = top - PAD - SIZE - i as f32 * LEADING + 1.0;
                if let Some(t) = lines.get(start + i) {
                    self.text(MARGIN_L + 2.0 * PAD, base, SIZE, 0.0, t);
                }
            }
            self.y = top - h - 2.0;
            start += take;
        }
    }

    /// Text fitted into `width` by shrinking the size if needed; returns the size used.
    fn fitted(&mut self, x: f32, y: f32, size: f32, width: f32, text: &str) -> f32 {
        let w = self.m.width(text, size);
        let size = if w > width && w > 0.0 {
            size * width / w
        } else {
            size
        };
        self.text(x, y, size, 0.0, text);
        size
    }
}

/// Builds the option tokens of a coded field; unknown or missing values are marked.
fn code_tokens(options: &[super::CodeOption], value: Option<&Value>) -> Vec<Tok> {
    let mut toks: Vec<Tok> = options
        .iter()
        .filter(|o| !o.import_only || value == Some(&o.code))
        .enumerate()
        .map(|(i, o)| {
            let n = o
                .code
                .as_i64()
                .or_else(|| i64::try_from(i + 1).ok())
                .unwrap_or(0);
            Tok::option(n, &o.label, value == Some(&o.code))
        })
        .collect();
    if value.is_none() {
        toks.push(Tok::plain(UNANSWERED, 0.45));
    }
    toks
}

/// The choices of a coded field in the chosen layout: numbered (musubi's numbering), or
/// as the form prints them, words separated by 「・」 with the chosen one circled.
fn field_tokens(
    layout: PdfLayout,
    options: &[super::CodeOption],
    value: Option<&Value>,
) -> Vec<Tok> {
    if layout == PdfLayout::Numbered {
        return code_tokens(options, value);
    }
    let mut toks = words(
        options
            .iter()
            .filter(|o| !o.import_only || value == Some(&o.code))
            .map(|o| (o.label.clone(), value == Some(&o.code)))
            .collect(),
    );
    if value.is_none() {
        toks.push(Tok::plain(UNANSWERED, 0.45));
    }
    toks
}

/// 前回認定結果 as the form prints it, 「非該当・要支援（ ）・要介護（ ）」, the chosen
/// category circled and its level written in the brackets. The stored value is a
/// 要介護状態区分コード (01, 11, 12, 13, 21–25).
fn previous_result_tokens(value: Option<&Value>) -> Vec<Tok> {
    let code = value.and_then(Value::as_str).unwrap_or("");
    let (support, care): (Option<&str>, Option<&str>) = match code {
        "11" => (Some("経過的要介護"), None),
        "12" => (Some("1"), None),
        "13" => (Some("2"), None),
        "21" => (None, Some("1")),
        "22" => (None, Some("2")),
        "23" => (None, Some("3")),
        "24" => (None, Some("4")),
        "25" => (None, Some("5")),
        _ => (None, None),
    };
    let bracket = |v: Option<&str>| match v {
        Some(n) => format!("（{n}）"),
        None => "（　）".to_owned(),
    };
    words(vec![
        ("非該当".to_owned(), code == "01"),
        (format!("要支援{}", bracket(support)), support.is_some()),
        (format!("要介護{}", bracket(care)), care.is_some()),
    ])
}

fn item_tokens(layout: PdfLayout, item: &Item, answer: Option<&Value>) -> Vec<Tok> {
    if layout == PdfLayout::Official && item.group == 7 {
        // The 自立度 scales are printed as words (自立・Ｊ1・Ｊ2…), not numbered.
        let chosen = answer.and_then(Value::as_i64);
        let mut toks = words(
            item.choices
                .iter()
                .filter(|c| !c.import_only || chosen == Some(c.code))
                .map(|c| (c.label.clone(), chosen == Some(c.code)))
                .collect(),
        );
        if answer.is_none() {
            toks.push(Tok::plain(UNANSWERED, 0.45));
        }
        return toks;
    }
    let mut toks = Vec::new();
    let mut subgroup: Option<&str> = None;
    let chosen: Vec<i64> = match answer {
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_i64).collect(),
        Some(v) => v.as_i64().into_iter().collect(),
        None => Vec::new(),
    };
    for c in &item.choices {
        if c.import_only && !chosen.contains(&c.code) {
            continue;
        }
        if let Some(sg) = c.subgroup.as_deref()
            && subgroup != Some(sg)
        {
            let mut t = Tok::plain(format!("［{sg}］"), 0.3);
            t.break_before = true;
            toks.push(t);
            subgroup = Some(sg);
        }
        toks.push(Tok::option(c.code, &c.label, chosen.contains(&c.code)));
    }
    match answer {
        None => toks.push(Tok::plain(UNANSWERED, 0.45)),
        Some(Value::Array(a)) if a.is_empty() && item.kind == ItemKind::Multi => {
            toks.push(Tok::plain("（該当なし）", 0.3));
        }
        _ => {}
    }
    toks
}

fn group_heading(labels: &Labels, number: u32) -> String {
    let title = labels
        .catalog
        .groups
        .iter()
        .find(|g| g.number == number)
        .map(|g| g.title.as_str())
        .unwrap_or("");
    match number {
        1..=5 => format!("第{number}群　{title}"),
        6 => format!("その他　{title}"),
        _ => title.to_owned(),
    }
}

fn notes_heading(labels: &Labels, number: u32) -> String {
    let title = if number == 6 {
        labels
            .catalog
            .item("6")
            .map(|i| i.short.clone())
            .unwrap_or_default()
    } else {
        labels
            .catalog
            .groups
            .iter()
            .find(|g| g.number == number)
            .map(|g| g.title.clone())
            .unwrap_or_default()
    };
    if number == 6 {
        format!("{number}　{title}についての特記事項")
    } else {
        format!("{number}　{title}に関連する項目についての特記事項")
    }
}

fn overview(l: &mut Layout<'_, '_>, labels: &Labels, json: &Value) -> Result<(), ExportError> {
    const LW: f32 = 104.0;
    let t = |p: &str| labels.title(p);
    let survey_date = str_at(json, "/overview/conducted/date");

    l.heading(&format!("Ⅰ　{}", t("/overview/conducted")?));
    let mut date = era_date(survey_date);
    let time = str_at(json, "/overview/conducted/time");
    if !time.is_empty() {
        date.push_str(&format!("　{time}"));
    }
    l.row(&t("/overview/conducted/date")?, LW, Body::Text(date));
    let place_opts = labels.options("/overview/conducted/place")?;
    let place = at(json, "/overview/conducted/place");
    let place_name = str_at(json, "/overview/conducted/place_name");
    let mut toks = field_tokens(l.layout, &place_opts, place);
    if l.official() {
        // 「自宅内・自宅外（ ）」: the place name is written in the brackets after 自宅外.
        let bracket = if place_name.is_empty() {
            "（　　　　）".to_owned()
        } else {
            format!("（{place_name}）")
        };
        let after_away = place_opts
            .iter()
            .position(|o| o.code == 2)
            .map(|i| 2 * i + 1)
            .filter(|i| *i <= toks.len())
            .unwrap_or(toks.len());
        toks.insert(after_away, Tok::plain(bracket, 0.0).tight());
    } else if !place_name.is_empty() {
        toks.push(Tok::plain(format!("（{place_name}）"), 0.0));
    }
    l.row(&t("/overview/conducted/place")?, LW, Body::Tokens(toks));
    let name = str_at(json, "/overview/conducted/surveyor_name");
    let kana = str_at(json, "/overview/conducted/surveyor_kana");
    let who = if kana.is_empty() {
        name.to_owned()
    } else {
        format!("{name}（{kana}）")
    };
    l.row(
        &t("/overview/conducted/surveyor_name")?,
        LW,
        Body::Text(who),
    );
    l.row(
        &t("/overview/conducted/affiliation")?,
        LW,
        Body::Text(str_at(json, "/overview/conducted/affiliation").to_owned()),
    );

    l.heading(&format!("Ⅱ　{}", t("/overview/history")?));
    let opts = labels.options("/overview/history/past_certification")?;
    let mut toks = field_tokens(
        l.layout,
        &opts,
        at(json, "/overview/history/past_certification"),
    );
    let prev = str_at(json, "/overview/history/previous_certification_date");
    if l.official() {
        let date = if prev.is_empty() {
            "　　年　　月　　日".to_owned()
        } else {
            era_date(prev)
        };
        toks.push(Tok::plain(format!("（前回認定　{date}）"), 0.0).tight());
    } else if !prev.is_empty() {
        toks.push(Tok::plain(
            format!(
                "（{} {}）",
                t("/overview/history/previous_certification_date")?,
                era_date(prev)
            ),
            0.0,
        ));
    }
    l.row(
        &t("/overview/history/past_certification")?,
        LW,
        Body::Tokens(toks),
    );
    let opts = labels.options("/overview/history/previous_result")?;
    let prev_result = at(json, "/overview/history/previous_result");
    let toks = if l.official() {
        previous_result_tokens(prev_result)
    } else {
        // Codes of other IF versions (11 経過的要介護 before 09B) only when chosen.
        let version = json
            .get("if_version")
            .and_then(Value::as_str)
            .unwrap_or(crate::care::checks::DEFAULT_IF_VERSION);
        let opts: Vec<_> = opts
            .into_iter()
            .filter(|o| {
                prev_result == Some(&o.code)
                    || o.code.as_str().is_none_or(|c| {
                        crate::care::checks::if_versions("previous-result", c)
                            .is_none_or(|v| v.iter().any(|x| x == version))
                    })
            })
            .collect();
        let mut toks = code_tokens(&opts, prev_result);
        if prev_result.is_none() {
            // Not asked for a first certification.
            toks.pop();
        }
        toks
    };
    l.row(
        &t("/overview/history/previous_result")?,
        LW,
        Body::Tokens(toks),
    );
    let name = str_at(json, "/subject/name");
    let kana = str_at(json, "/subject/name_kana");
    l.row(
        &format!("{}（{}）", t("/subject/name")?, t("/subject/name_kana")?),
        LW,
        Body::Text(format!("{name}（{kana}）")),
    );
    let opts = labels.options("/subject/sex")?;
    l.row(
        &t("/subject/sex")?,
        LW,
        Body::Tokens(field_tokens(l.layout, &opts, at(json, "/subject/sex"))),
    );
    let birth = str_at(json, "/subject/birth_date");
    let mut b = era_date(birth);
    if let Some(age) = age_on(birth, survey_date) {
        b.push_str(&format!("（{age}歳）"));
    }
    l.row(&t("/subject/birth_date")?, LW, Body::Text(b));
    let mut addr = String::new();
    let pc = str_at(json, "/subject/postal_code");
    if !pc.is_empty() {
        addr.push_str(&format!("〒{pc}　"));
    }
    addr.push_str(str_at(json, "/subject/address"));
    let phone = str_at(json, "/subject/phone");
    if !phone.is_empty() {
        addr.push_str(&format!("\n{} {phone}", t("/subject/phone")?));
    }
    l.row(&t("/subject/address")?, LW, Body::Text(addr));
    if let Some(fc) = at(json, "/overview/history/family_contact") {
        let base = "/overview/history/family_contact";
        let mut s = String::new();
        let pc = str_at(fc, "postal_code");
        if !pc.is_empty() {
            s.push_str(&format!("〒{pc}　"));
        }
        s.push_str(str_at(fc, "address"));
        let mut sep = "\n";
        for f in ["phone", "name", "relationship"] {
            let v = str_at(fc, f);
            if !v.is_empty() {
                s.push_str(&format!("{sep}{} {v}", t(&format!("{base}/{f}"))?));
                sep = "　";
            }
        }
        l.row(&t(base)?, LW, Body::Text(s));
    }

    l.heading(&format!("Ⅲ　{}", t("/overview/services")?));
    services(l, labels, json)?;
    l.subheading(&t("/overview/facility")?);
    let opts = labels.options("/overview/facility/type")?;
    let ftype = at(json, "/overview/facility/type");
    let toks = if l.official() {
        // Check boxes, as on the form: □ each facility type, ■ the one ticked.
        opts.iter()
            .map(|o| {
                let ticked = ftype == Some(&o.code);
                Tok::plain(
                    format!("{}{}", if ticked { "■" } else { "□" }, o.label),
                    0.0,
                )
            })
            .collect()
    } else {
        let mut toks = code_tokens(&opts, ftype);
        if ftype.is_none() {
            toks.pop();
        }
        toks
    };
    l.row(&t("/overview/facility/type")?, LW, Body::Tokens(toks));
    if let Some(f) = at(json, "/overview/facility") {
        let mut s = str_at(f, "name").to_owned();
        let pc = str_at(f, "postal_code");
        let addr = str_at(f, "address");
        if !pc.is_empty() || !addr.is_empty() {
            s.push('\n');
            if !pc.is_empty() {
                s.push_str(&format!("〒{pc}　"));
            }
            s.push_str(addr);
        }
        let phone = str_at(f, "phone");
        if !phone.is_empty() {
            s.push_str(&format!("　{} {phone}", t("/overview/facility/phone")?));
        }
        if !s.trim().is_empty() {
            l.row(&t("/overview/facility/name")?, LW, Body::Text(s));
        }
    }

    l.heading(&format!("Ⅳ　{}", t("/overview/environment")?));
    let opts = labels.options("/overview/environment/family_situation")?;
    l.row(
        &t("/overview/environment/family_situation")?,
        LW,
        Body::Tokens(field_tokens(
            l.layout,
            &opts,
            at(json, "/overview/environment/family_situation"),
        )),
    );
    let fields = ["family", "living", "facility_life", "equipment", "other"];
    if l.official() {
        // One free-text box under the section's printed heading, as on the form; the
        // five fields are musubi's split of that box, printed as paragraphs.
        let text: Vec<&str> = fields
            .iter()
            .map(|f| str_at(json, &format!("/overview/environment/{f}")).trim())
            .filter(|t| !t.is_empty())
            .collect();
        l.boxed(&text.join("\n"), 8);
        return Ok(());
    }
    for f in fields {
        let p = format!("/overview/environment/{f}");
        l.row(&t(&p)?, LW, Body::Text(str_at(json, &p).to_owned()));
    }
    Ok(())
}

fn services(l: &mut Layout<'_, '_>, labels: &Labels, json: &Value) -> Result<(), ExportError> {
    const ROW_H: f32 = 12.0;
    const S: f32 = 7.5;
    let rows = labels.service_rows()?;
    let (grid, wide): (Vec<_>, Vec<_>) = rows.iter().partition(|r| r.kind != ServiceKind::Text);
    let half = grid.len().div_ceil(2);
    let col_w = (CONTENT_W - 8.0) / 2.0;
    let cell = |r: &super::ServiceRow| {
        let v = at(json, &format!("/overview/services/{}", r.row));
        let used = v.and_then(|v| v.get("used")).and_then(Value::as_bool) == Some(true);
        let amount = v.and_then(|v| v.get("amount")).and_then(Value::as_i64);
        let text = v
            .and_then(|v| v.get("text"))
            .and_then(Value::as_str)
            .unwrap_or("");
        (used, amount, text.to_owned())
    };
    l.ensure(half as f32 * ROW_H + 4.0);
    let top = l.y;
    for (i, r) in grid.iter().enumerate() {
        let col = i / half;
        let line = i % half;
        let x = MARGIN_L + col as f32 * (col_w + 8.0);
        let y = top - (line as f32 + 1.0) * ROW_H;
        let (used, amount, _) = cell(r);
        box_tick(l, x, y, used);
        let value = match r.kind {
            ServiceKind::Count => {
                let (per, unit) = r
                    .unit
                    .as_deref()
                    .and_then(|u| u.split_once('/'))
                    .map(|(u, p)| (p, u))
                    .unwrap_or(("", ""));
                let n = amount
                    .map(|n| n.to_string())
                    .unwrap_or_else(|| "　".to_owned());
                format!("{per} {n} {unit}")
            }
            ServiceKind::Items => {
                let n = amount
                    .map(|n| n.to_string())
                    .unwrap_or_else(|| "　".to_owned());
                format!("{n} {}", r.unit.as_deref().unwrap_or(""))
            }
            ServiceKind::YesNo => if used { "あり" } else { "なし" }.to_owned(),
            ServiceKind::Text => String::new(),
        };
        let vw = l.m.width(&value, S);
        l.text(x + col_w - vw - 2.0, y + 3.5, S, 0.0, &value);
        l.fitted(x + 12.0, y + 3.5, S, col_w - vw - 18.0, &r.title);
        l.ops().push(Op::Line {
            x1: x,
            y1: y,
            x2: x + col_w,
            y2: y,
            width: 0.3,
            gray: 0.6,
        });
    }
    l.y = top - half as f32 * ROW_H;
    for r in wide {
        l.ensure(ROW_H);
        let y = l.y - ROW_H;
        let (used, _, text) = cell(r);
        box_tick(l, MARGIN_L, y, used);
        let label = r.title.replace("［ ］", "");
        let s = format!("{label}［{text}］");
        l.fitted(MARGIN_L + 12.0, y + 3.5, S, CONTENT_W - 14.0, &s);
        l.ops().push(Op::Line {
            x1: MARGIN_L,
            y1: y,
            x2: PAGE_W - MARGIN_R,
            y2: y,
            width: 0.3,
            gray: 0.6,
        });
        l.y = y;
    }
    l.y -= 4.0;
    Ok(())
}

/// A tick box (□, with レ when ticked, as on the paper form).
fn box_tick(l: &mut Layout<'_, '_>, x: f32, y: f32, ticked: bool) {
    l.ops().push(Op::Stroke {
        x: x + 1.5,
        y: y + 2.5,
        w: 8.0,
        h: 8.0,
        width: 0.5,
        gray: 0.0,
    });
    if ticked {
        l.text(x + 2.0, y + 3.5, 7.5, 0.0, "レ");
    }
}

fn basic(l: &mut Layout<'_, '_>, labels: &Labels, json: &Value) {
    // As on the paper form: the question on one line, its options below it.
    const LW: f32 = 30.0;
    let items = json.get("items");
    let mut group = 0;
    for item in &labels.catalog.items {
        if item.group != group {
            group = item.group;
            l.heading(&group_heading(labels, group));
        }
        let mut title = item.title.clone();
        let numbered = l.layout == PdfLayout::Numbered;
        match (item.kind, item.seq) {
            (ItemKind::Multi, _) => {
                title.push_str("（複数回答可）");
                let seqs: Vec<u32> = item.choices.iter().filter_map(|c| c.seq).collect();
                if let (true, Some(a), Some(b)) = (numbered, seqs.iter().min(), seqs.iter().max()) {
                    // musubi's own 連番, not printed on the official form.
                    title.push_str(&format!("　〔{a}–{b}〕"));
                }
            }
            (ItemKind::Single, Some(seq)) if numbered => title.push_str(&format!("　〔{seq}〕")),
            _ => {}
        }
        let answer = items.and_then(|i| i.get(&item.key));
        let mut toks = vec![Tok::plain(title, 0.0)];
        let mut options = item_tokens(l.layout, item, answer);
        if let Some(first) = options.first_mut() {
            first.break_before = true;
        }
        toks.extend(options);
        l.row(&item.key, LW, Body::Tokens(toks));
    }
}

fn notes(l: &mut Layout<'_, '_>, labels: &Labels, json: &Value) {
    let mut by_group: BTreeMap<u32, Vec<(&str, &str)>> = BTreeMap::new();
    if let Some(list) = json.get("special_notes").and_then(Value::as_array) {
        for n in list {
            let item = str_at(n, "item");
            let group = labels
                .catalog
                .item(item)
                .map(|i| i.group)
                .or_else(|| item.split('-').next().and_then(|g| g.parse().ok()))
                .unwrap_or(7);
            by_group
                .entry(group)
                .or_default()
                .push((item, str_at(n, "text")));
        }
    }
    for g in 1..=7u32 {
        l.heading(&notes_heading(labels, g));
        if l.official() && g != 6 {
            // As on the sheet: the items of the group, number and label, under the heading.
            let list: Vec<Tok> = labels
                .catalog
                .items
                .iter()
                .filter(|i| i.group == g)
                .map(|i| Tok::plain(format!("{}　{}", i.key, i.short), 0.35))
                .collect();
            l.row("", 0.0, Body::Tokens(list));
        }
        match by_group.get(&g) {
            None => l.row("", 44.0, Body::Text("（記載なし）".to_owned())),
            Some(list) => {
                for (item, text) in list {
                    let short = labels
                        .catalog
                        .item(item)
                        .map(|i| i.short.as_str())
                        .unwrap_or("");
                    // As on the sheet: the item number in brackets, then the text (here
                    // under the item's short label).
                    let label = format!("（{item}）");
                    if l.official() {
                        // The sheet's row: the item number in brackets, then the text.
                        l.row(&label, 44.0, Body::Text((*text).to_owned()));
                        continue;
                    }
                    let mut body = Tok::plain(*text, 0.0);
                    body.break_before = true;
                    l.row(
                        &label,
                        44.0,
                        Body::Tokens(vec![Tok::plain(short, 0.35), body]),
                    );
                }
            }
        }
    }
}

/// Renders one survey in the official layout ([`PdfLayout::Official`]). `doc` is its id
/// (printed in the footer, named in errors); `font` is a TrueType font with Japanese
/// glyphs (the app passes the bundled IPAexGothic).
pub fn export_pdf(
    labels: &Labels,
    doc: &str,
    json: &Value,
    font: &[u8],
) -> Result<PdfOutput, ExportError> {
    export_pdf_with_layout(labels, doc, json, font, PdfLayout::Official)
}

/// Renders one survey in the given layout (see [`export_pdf`]).
pub fn export_pdf_with_layout(
    labels: &Labels,
    doc: &str,
    json: &Value,
    font: &[u8],
    layout: PdfLayout,
) -> Result<PdfOutput, ExportError> {
    ensure_survey(doc, json)?;
    let m = Metrics::new(font)?;
    let ident = format!(
        "{} {}　{} {}",
        labels.title("/subject/insurer_number")?,
        str_at(json, "/subject/insurer_number"),
        labels.title("/subject/insured_number")?,
        str_at(json, "/subject/insured_number"),
    );
    let mut l = Layout {
        m: &m,
        pages: Vec::new(),
        y: PAGE_H,
        part: String::new(),
        ident,
        layout,
        date_line: None,
    };
    let form = labels.title("")?;
    l.start_part(&format!("{form}（{}）", labels.title("/overview")?));
    overview(&mut l, labels, json)?;
    if layout == PdfLayout::Official {
        // The 基本調査 and 特記事項 sheets carry 「調査日 年 月 日」 in their header.
        let date = str_at(json, "/overview/conducted/date");
        l.date_line = Some(if date.is_empty() {
            "調査日　　　年　　月　　日".to_owned()
        } else {
            format!("調査日 {}", era_date(date))
        });
    }
    l.start_part(&format!("{form}（{}）", labels.title("/items")?));
    basic(&mut l, labels, json);
    l.start_part(&format!("{form}（{}）", labels.title("/special_notes")?));
    notes(&mut l, labels, json);

    number_pages(&m, &mut l.pages, doc);
    write_pdf(&m, font, &l.pages, &labels.title("")?)
}

/// 「文書ID … n / total」 at the foot of every page.
fn number_pages(m: &Metrics<'_>, pages: &mut [Vec<Op>], doc: &str) {
    let total = pages.len();
    for (i, page) in pages.iter_mut().enumerate() {
        let footer = format!("文書ID {doc}　　{} / {total}", i + 1);
        let w = m.width(&footer, 7.0);
        page.push(Op::Text {
            x: PAGE_W - MARGIN_R - w,
            y: MARGIN_B - 20.0,
            size: 7.0,
            gray: 0.35,
            text: footer,
        });
    }
}

fn deflate(data: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::new(6));
    // Writing into a Vec cannot fail.
    let _ = e.write_all(data);
    e.finish().unwrap_or_default()
}

fn write_pdf(
    m: &Metrics<'_>,
    font: &[u8],
    pages: &[Vec<Op>],
    title: &str,
) -> Result<PdfOutput, ExportError> {
    // Glyphs used, and which characters map to them (for ToUnicode).
    let mut substituted = 0usize;
    let mut used: BTreeMap<u16, char> = BTreeMap::new();
    for op in pages.iter().flatten() {
        if let Op::Text { text, .. } = op {
            for c in text.chars() {
                let g = m.glyph_or_substitute(c);
                if m.glyph(c).is_none() {
                    substituted += 1;
                    used.entry(g).or_insert(SUBSTITUTE);
                } else {
                    used.entry(g).or_insert(c);
                }
            }
        }
    }
    let mut remapper = subsetter::GlyphRemapper::new();
    for g in used.keys() {
        remapper.remap(*g);
    }
    let subset = subsetter::subset(font, 0, &remapper)
        .map_err(|e| ExportError::Font(format!("subsetting failed ({e})")))?;
    let cid = |g: u16| remapper.get(g).unwrap_or(0);

    let mut pdf = Pdf::new();
    let mut next = 1;
    let mut alloc = || {
        let r = Ref::new(next);
        next += 1;
        r
    };
    let catalog_id = alloc();
    let tree_id = alloc();
    let info_id = alloc();
    let type0_id = alloc();
    let cid_id = alloc();
    let desc_id = alloc();
    let file_id = alloc();
    let cmap_id = alloc();
    let font_name = Name(b"F1");

    pdf.catalog(catalog_id).pages(tree_id);
    pdf.document_info(info_id)
        .title(TextStr(title))
        .producer(TextStr("musubi"));

    let mut page_ids = Vec::with_capacity(pages.len());
    for ops in pages {
        let page_id = alloc();
        let content_id = alloc();
        page_ids.push(page_id);
        let mut c = Content::new();
        for op in ops {
            match op {
                Op::Fill { x, y, w, h, gray } => {
                    c.set_fill_gray(*gray);
                    c.rect(*x, *y, *w, *h);
                    c.fill_nonzero();
                }
                Op::Stroke {
                    x,
                    y,
                    w,
                    h,
                    width,
                    gray,
                } => {
                    c.set_stroke_gray(*gray);
                    c.set_line_width(*width);
                    c.rect(*x, *y, *w, *h);
                    c.stroke();
                }
                Op::Line {
                    x1,
                    y1,
                    x2,
                    y2,
                    width,
                    gray,
                } => {
                    c.set_stroke_gray(*gray);
                    c.set_line_width(*width);
                    c.move_to(*x1, *y1);
                    c.line_to(*x2, *y2);
                    c.stroke();
                }
                Op::Ellipse { x, y, w, h, width } => {
                    // Four Bézier arcs; k is the usual control-point factor for a quarter.
                    const K: f32 = 0.552_284_8;
                    let (rx, ry) = (w / 2.0, h / 2.0);
                    let (cx, cy) = (x + rx, y + ry);
                    c.set_stroke_gray(0.0);
                    c.set_line_width(*width);
                    c.move_to(cx + rx, cy);
                    c.cubic_to(cx + rx, cy + K * ry, cx + K * rx, cy + ry, cx, cy + ry);
                    c.cubic_to(cx - K * rx, cy + ry, cx - rx, cy + K * ry, cx - rx, cy);
                    c.cubic_to(cx - rx, cy - K * ry, cx - K * rx, cy - ry, cx, cy - ry);
                    c.cubic_to(cx + K * rx, cy - ry, cx + rx, cy - K * ry, cx + rx, cy);
                    c.close_path();
                    c.stroke();
                }
                Op::Text {
                    x,
                    y,
                    size,
                    gray,
                    text,
                } => {
                    let mut bytes = Vec::with_capacity(text.len() * 2);
                    for ch in text.chars() {
                        bytes.extend_from_slice(&cid(m.glyph_or_substitute(ch)).to_be_bytes());
                    }
                    c.set_fill_gray(*gray);
                    c.begin_text();
                    c.set_font(font_name, *size);
                    c.set_text_matrix([1.0, 0.0, 0.0, 1.0, *x, *y]);
                    c.show(Str(&bytes));
                    c.end_text();
                }
            }
        }
        let data = deflate(&c.finish().into_vec());
        pdf.stream(content_id, &data).filter(Filter::FlateDecode);
        let mut page = pdf.page(page_id);
        page.media_box(Rect::new(0.0, 0.0, PAGE_W, PAGE_H));
        page.parent(tree_id);
        page.contents(content_id);
        page.resources().fonts().pair(font_name, type0_id);
        page.finish();
    }
    pdf.pages(tree_id)
        .kids(page_ids.iter().copied())
        .count(i32::try_from(page_ids.len()).unwrap_or(i32::MAX));

    let system_info = SystemInfo {
        registry: Str(b"Adobe"),
        ordering: Str(b"Identity"),
        supplement: 0,
    };
    pdf.type0_font(type0_id)
        .base_font(Name(FONT_NAME))
        .encoding_predefined(Name(b"Identity-H"))
        .descendant_font(cid_id)
        .to_unicode(cmap_id);
    {
        let mut cid_font = pdf.cid_font(cid_id);
        cid_font
            .subtype(CidFontType::Type2)
            .base_font(Name(FONT_NAME))
            .system_info(system_info)
            .font_descriptor(desc_id)
            .default_width(1000.0)
            .cid_to_gid_map_predefined(Name(b"Identity"));
        let mut widths = cid_font.widths();
        for g in used.keys() {
            widths.consecutive(cid(*g), [m.advance_1000(*g)]);
        }
        widths.finish();
        cid_font.finish();
    }
    let s = |v: i16| f32::from(v) * 1000.0 / m.upem;
    let bb = m.face.global_bounding_box();
    pdf.font_descriptor(desc_id)
        .name(Name(FONT_NAME))
        .flags(FontFlags::SYMBOLIC)
        .bbox(Rect::new(
            s(bb.x_min),
            s(bb.y_min),
            s(bb.x_max),
            s(bb.y_max),
        ))
        .italic_angle(0.0)
        .ascent(s(m.face.ascender()))
        .descent(s(m.face.descender()))
        .cap_height(s(m.face.capital_height().unwrap_or(m.face.ascender())))
        .stem_v(80.0)
        .font_file2(file_id);
    let packed = deflate(&subset);
    pdf.stream(file_id, &packed)
        .filter(Filter::FlateDecode)
        .pair(
            Name(b"Length1"),
            i32::try_from(subset.len()).unwrap_or(i32::MAX),
        );
    let mut cmap = pdf_writer::types::UnicodeCmap::new(Name(b"Custom"), system_info);
    let mut seen = BTreeSet::new();
    for (g, c) in &used {
        let id = cid(*g);
        if seen.insert(id) {
            cmap.pair(id, *c);
        }
    }
    let cmap_data = deflate(&cmap.finish().into_vec());
    pdf.cmap(cmap_id, &cmap_data).filter(Filter::FlateDecode);

    Ok(PdfOutput {
        bytes: pdf.finish(),
        pages: pages.len(),
        substituted_chars: substituted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn circled_numbers() {
        assert_eq!(circled(1), "①");
        assert_eq!(circled(12), "⑫");
        assert_eq!(circled(21), "(21)");
        assert_eq!(circled(0), "(0)");
    }
}

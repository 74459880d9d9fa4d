//! 居宅サービス計画作成依頼（変更）届出書 as an A4 PDF: the notice's fields in the order
//! the municipal forms print them (区分, 被保険者, 計画を作成する事業者, 計画作成開始,
//! 変更の内容, the declaration, 届出者), choices written as words with the chosen one
//! circled. The person's details come from the subject document; the 個人番号 box is
//! printed empty, to be filled by hand at the counter if the municipality asks for it.

use serde_json::Value;

use super::{
    Body, CONTENT_W, LEADING, Layout, MARGIN_L, PAD, PAGE_H, PdfLayout, PdfOutput, SIZE, Tok,
    words, write_pdf,
};
use crate::export::{ExportError, Labels, at, ensure_document, era_date, str_at};
use crate::schema::DocKind;

const KIND: DocKind = DocKind::PlanRequest;

/// Width of the label column.
const LABEL_W: f32 = 150.0;

/// Renders the notice `json` (document `doc`) for the person `subject` (the subject
/// document its `subject_id` names) with `font` (a TrueType/OpenType font, embedded as a
/// subset). Both documents must pass their schemas; nothing is rendered otherwise.
pub fn export_plan_request_pdf(
    labels: &Labels,
    doc: &str,
    json: &Value,
    subject: &Value,
    font: &[u8],
) -> Result<PdfOutput, ExportError> {
    ensure_document(doc, json, KIND)?;
    let subject_doc = str_at(json, "/subject_id");
    ensure_document(subject_doc, subject, DocKind::Subject)?;
    let m = super::Metrics::new(font)?;
    let person = |k: &str| str_at(subject, &format!("/person/{k}"));
    let title = |path: &str| labels.kind_title(KIND, path);
    let person_title = |k: &str| labels.kind_title(DocKind::Subject, &format!("/person/{k}"));
    let choices = |path: &str| -> Result<Vec<Tok>, ExportError> {
        let chosen = str_at(json, path);
        Ok(words(
            labels
                .kind_choices(KIND, path)?
                .into_iter()
                .map(|c| {
                    let on = c == chosen;
                    (c, on)
                })
                .collect(),
        ))
    };
    let date_or_blank = |path: &str| match at(json, path).and_then(Value::as_str) {
        Some(d) => era_date(d),
        None => "　　　　年　　月　　日".to_owned(),
    };
    let with_postal = |postal: &str, address: &str| {
        if postal.is_empty() {
            address.to_owned()
        } else {
            format!("〒{postal}　{address}")
        }
    };

    let ident = format!(
        "{} {}　{} {}",
        person_title("insurer_number")?,
        person("insurer_number"),
        person_title("insured_number")?,
        person("insured_number"),
    );
    let mut l = Layout {
        m: &m,
        pages: Vec::new(),
        y: PAGE_H,
        part: String::new(),
        ident,
        layout: PdfLayout::Official,
        date_line: None,
    };
    let form = title("")?;
    l.start_part(&form);

    l.row(
        &title("/category")?,
        LABEL_W,
        Body::Tokens(choices("/category")?),
    );
    l.row(&title("/plan")?, LABEL_W, Body::Tokens(choices("/plan")?));

    l.heading(&title("/subject_id")?);
    l.row(
        &person_title("name_kana")?,
        LABEL_W,
        Body::Text(person("name_kana").to_owned()),
    );
    l.row(
        &person_title("name")?,
        LABEL_W,
        Body::Text(person("name").to_owned()),
    );
    l.row(
        &person_title("insured_number")?,
        LABEL_W,
        Body::Text(person("insured_number").to_owned()),
    );
    // Left empty on purpose: musubi never holds a 個人番号.
    l.row("個人番号", LABEL_W, Body::Text(String::new()));
    let sex = labels.kind_options(DocKind::Subject, "/person/sex")?;
    let chosen_sex = at(subject, "/person/sex");
    let mut birth = vec![Tok::plain(era_date(person("birth_date")), 0.0)];
    birth.push(Tok::plain(format!("　{}", person_title("sex")?), 0.0));
    birth.extend(words(
        sex.iter()
            .map(|o| (o.label.clone(), chosen_sex == Some(&o.code)))
            .collect(),
    ));
    l.row(&person_title("birth_date")?, LABEL_W, Body::Tokens(birth));
    l.row(
        &person_title("address")?,
        LABEL_W,
        Body::Text(with_postal(person("postal_code"), person("address"))),
    );
    l.row(
        &person_title("phone")?,
        LABEL_W,
        Body::Text(person("phone").to_owned()),
    );

    l.heading(&title("/provider")?);
    l.row(
        &title("/provider/type")?,
        LABEL_W,
        Body::Tokens(choices("/provider/type")?),
    );
    for field in ["name", "office_number"] {
        let path = format!("/provider/{field}");
        l.row(
            &title(&path)?,
            LABEL_W,
            Body::Text(str_at(json, &path).to_owned()),
        );
    }
    l.row(
        &title("/provider/address")?,
        LABEL_W,
        Body::Text(with_postal(
            str_at(json, "/provider/postal_code"),
            str_at(json, "/provider/address"),
        )),
    );
    for field in ["phone", "care_manager"] {
        let path = format!("/provider/{field}");
        l.row(
            &title(&path)?,
            LABEL_W,
            Body::Text(str_at(json, &path).to_owned()),
        );
    }
    if json.get("delegated_to").is_some() {
        l.heading(&title("/delegated_to")?);
        for field in ["name", "office_number", "address"] {
            let path = format!("/delegated_to/{field}");
            l.row(
                &title(&path)?,
                LABEL_W,
                Body::Text(str_at(json, &path).to_owned()),
            );
        }
    }
    l.row(
        &title("/start_date")?,
        LABEL_W,
        Body::Text(date_or_blank("/start_date")),
    );

    l.heading(&title("/change")?);
    l.row(
        &title("/change/date")?,
        LABEL_W,
        Body::Text(date_or_blank("/change/date")),
    );
    let previous = [
        str_at(json, "/change/previous_name"),
        str_at(json, "/change/previous_office_number"),
    ]
    .into_iter()
    .filter(|s| !s.is_empty())
    .collect::<Vec<_>>()
    .join("　");
    l.row(
        &title("/change/previous_name")?,
        LABEL_W,
        Body::Text(previous),
    );
    l.row(
        &title("/change/reason")?,
        LABEL_W,
        Body::Text(str_at(json, "/change/reason").to_owned()),
    );

    // The declaration the forms carry above the filer's signature, in our own words.
    l.ensure(40.0);
    l.y -= PAD;
    let plan = str_at(json, "/plan");
    let declaration = format!("上記の事業者に{plan}の作成を依頼することを届け出ます。");
    for line in l.paragraph_lines(&declaration, CONTENT_W, SIZE) {
        let y = l.y - LEADING;
        for s in line {
            l.text(MARGIN_L + s.dx, y, SIZE, 0.0, &s.text);
        }
        l.y -= LEADING;
    }
    l.y -= PAD;
    l.row(
        &title("/filed_date")?,
        LABEL_W,
        Body::Text(date_or_blank("/filed_date")),
    );
    l.heading(&title("/filer")?);
    l.row(
        &title("/filer/relation")?,
        LABEL_W,
        Body::Tokens(choices("/filer/relation")?),
    );
    // The person files for themselves: their own name and address, unless given.
    let own = str_at(json, "/filer/relation") == "本人";
    let filer = |field: &str, fallback: &str| {
        let v = str_at(json, &format!("/filer/{field}"));
        if v.is_empty() && own {
            fallback.to_owned()
        } else {
            v.to_owned()
        }
    };
    l.row(
        &title("/filer/name")?,
        LABEL_W,
        Body::Text(filer("name", person("name"))),
    );
    l.row(
        &title("/filer/address")?,
        LABEL_W,
        Body::Text(filer("address", person("address"))),
    );
    l.row(
        &title("/filer/phone")?,
        LABEL_W,
        Body::Text(filer("phone", person("phone"))),
    );

    super::number_pages(&m, &mut l.pages, doc);
    write_pdf(&m, font, &l.pages, &form)
}

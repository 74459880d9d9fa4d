//! `musubi plan-request`: the 居宅サービス計画作成依頼（変更）届出書, created from a subject
//! document. It is printed with `musubi export pdf ID` like a survey.

use anyhow::Result;
use clap::{Args, Subcommand, ValueEnum};
use musubi_engine::Engine;
use musubi_engine::schema::DocKind;
use serde_json::{Map, Value, json};

use crate::common::{load_kind, now_ms, parse_id};

#[derive(Subcommand, Debug)]
pub enum PlanRequestCommand {
    /// Create a notice for a subject: the person's name, birth date, address and insured
    /// number are printed from the subject document, not copied. Prints the new id.
    New(Box<NewArgs>),
}

/// `--plan` values.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum PlanArg {
    /// 居宅サービス計画 (要介護).
    #[value(name = "居宅")]
    Care,
    /// 介護予防サービス計画 (要支援, 事業対象者).
    #[value(name = "予防")]
    Prevention,
}

#[derive(Args, Debug)]
pub struct NewArgs {
    /// Id of the subject document (the person the plan is for).
    #[arg(long)]
    subject: String,
    /// 区分: 新規 or 変更.
    #[arg(long)]
    category: String,
    /// 計画の種類: 居宅 (居宅サービス計画) or 予防 (介護予防サービス計画).
    #[arg(long, value_enum)]
    plan: PlanArg,
    /// 事業所の種別: 居宅介護支援事業所, 介護予防支援事業所（地域包括支援センター）,
    /// 小規模多機能型居宅介護事業所 or 看護小規模多機能型居宅介護事業所.
    #[arg(long)]
    provider_type: String,
    /// 事業所番号 of the office that draws up the plan.
    #[arg(long)]
    provider_number: String,
    /// 事業所名.
    #[arg(long)]
    provider_name: String,
    /// 所在地.
    #[arg(long)]
    provider_address: Option<String>,
    /// 郵便番号 of the office.
    #[arg(long)]
    provider_postal_code: Option<String>,
    /// 電話番号 of the office.
    #[arg(long)]
    provider_phone: Option<String>,
    /// 担当介護支援専門員.
    #[arg(long)]
    care_manager: Option<String>,
    /// 計画作成開始（予定）年月日 (YYYY-MM-DD).
    #[arg(long, value_name = "YYYY-MM-DD")]
    start: String,
    /// 変更年月日 (区分 変更 only).
    #[arg(long, value_name = "YYYY-MM-DD")]
    change_date: Option<String>,
    /// 変更事由 (区分 変更 only).
    #[arg(long)]
    change_reason: Option<String>,
    /// 変更前の事業所番号.
    #[arg(long)]
    previous_number: Option<String>,
    /// 変更前の事業所名.
    #[arg(long)]
    previous_name: Option<String>,
    /// 介護予防支援の委託先: 事業所番号 (with --delegated-name).
    #[arg(long, requires = "delegated_name")]
    delegated_number: Option<String>,
    /// 介護予防支援の委託先: 事業所名.
    #[arg(long, requires = "delegated_number")]
    delegated_name: Option<String>,
    /// 届出者: 本人, 家族 or その他.
    #[arg(long)]
    filer: String,
    /// 届出者氏名 (家族, その他).
    #[arg(long)]
    filer_name: Option<String>,
    /// 届出者住所.
    #[arg(long)]
    filer_address: Option<String>,
    /// 届出者電話番号.
    #[arg(long)]
    filer_phone: Option<String>,
    /// 届出年月日 (YYYY-MM-DD; left blank on the form when not given).
    #[arg(long, value_name = "YYYY-MM-DD")]
    filed: Option<String>,
}

/// An object of the given fields, leaving out those not given.
fn fields(pairs: &[(&str, Option<&String>)]) -> Value {
    Value::Object(
        pairs
            .iter()
            .filter_map(|(k, v)| v.map(|v| ((*k).to_owned(), json!(v))))
            .collect::<Map<_, _>>(),
    )
}

/// The notice `args` describe, for `subject`. The schema and the care rules check it when
/// the engine imports it.
fn notice(args: &NewArgs, subject: &str) -> Value {
    let mut doc = json!({
        "kind": DocKind::PlanRequest.as_str(),
        "subject_id": subject,
        "category": args.category,
        "plan": match args.plan {
            PlanArg::Care => "居宅サービス計画",
            PlanArg::Prevention => "介護予防サービス計画",
        },
        "provider": fields(&[
            ("type", Some(&args.provider_type)),
            ("office_number", Some(&args.provider_number)),
            ("name", Some(&args.provider_name)),
            ("address", args.provider_address.as_ref()),
            ("postal_code", args.provider_postal_code.as_ref()),
            ("phone", args.provider_phone.as_ref()),
            ("care_manager", args.care_manager.as_ref()),
        ]),
        "start_date": args.start,
        "filer": fields(&[
            ("relation", Some(&args.filer)),
            ("name", args.filer_name.as_ref()),
            ("address", args.filer_address.as_ref()),
            ("phone", args.filer_phone.as_ref()),
        ]),
    });
    let change = fields(&[
        ("date", args.change_date.as_ref()),
        ("reason", args.change_reason.as_ref()),
        ("previous_office_number", args.previous_number.as_ref()),
        ("previous_name", args.previous_name.as_ref()),
    ]);
    if change.as_object().is_some_and(|o| !o.is_empty()) {
        doc["change"] = change;
    }
    if args.delegated_number.is_some() {
        doc["delegated_to"] = fields(&[
            ("office_number", args.delegated_number.as_ref()),
            ("name", args.delegated_name.as_ref()),
        ]);
    }
    if let Some(d) = &args.filed {
        doc["filed_date"] = json!(d);
    }
    doc
}

/// Runs one `plan-request` command; `open` opens the store.
pub fn run(cmd: PlanRequestCommand, open: impl FnOnce() -> Result<Engine>) -> Result<()> {
    match cmd {
        PlanRequestCommand::New(args) => {
            let subject_id = parse_id(&args.subject)?;
            let engine = open()?;
            // The subject must be a person this store holds.
            load_kind(&engine, subject_id, DocKind::Subject)?;
            let doc = notice(&args, &subject_id.to_string());
            let outcome =
                engine.import(&[(DocKind::PlanRequest.as_str().to_owned(), doc)], now_ms())?;
            engine.close()?;
            for id in outcome.ids {
                outln!("{id}");
            }
            Ok(())
        }
    }
}

//! Human-readable and JSON output of the CLI.

use anyhow::Result;
use musubi_app::history::{attested_label, declared_mismatch};
use musubi_engine::EngineError;
use musubi_engine::doc::{Conflict, HistoryEntry};
use musubi_engine::schema::{DocKind, SurveyCatalog};
use musubi_engine::store::DocSummary;
use serde_json::{Value, json};

/// Local date and time of a unix-ms timestamp.
fn when(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| {
            t.with_timezone(&chrono::Local)
                .format("%Y-%m-%d %H:%M:%S %:z")
                .to_string()
        })
        .unwrap_or_else(|| "(unknown time)".to_owned())
}

fn short(v: &Value) -> String {
    let s = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if s.chars().count() > 60 {
        let cut: String = s.chars().take(57).collect();
        format!("{cut}…")
    } else {
        s
    }
}

/// Adds the official label of a code where the path is a survey item.
fn with_label(catalog: Option<&SurveyCatalog>, path: &str, v: &Value) -> String {
    let base = short(v);
    let Some(key) = path.strip_prefix("/items/") else {
        return base;
    };
    let Some(item) = catalog.and_then(|c| c.item(key)) else {
        return base;
    };
    let label = |code: &Value| {
        code.as_i64()
            .and_then(|c| item.label_of(c))
            .map(str::to_owned)
    };
    match v {
        Value::Number(_) => label(v).map(|l| format!("{base} {l}")).unwrap_or(base),
        Value::Array(list) => {
            let labels: Vec<String> = list.iter().filter_map(label).collect();
            format!("{base} ({})", labels.join("・"))
        }
        _ => base,
    }
}

pub fn print_list(docs: &[DocSummary], as_json: bool) -> Result<()> {
    if as_json {
        let list: Vec<Value> = docs
            .iter()
            .map(|d| {
                json!({
                    "id": d.id.to_string(),
                    "kind": d.kind,
                    "office": d.office,
                    "title": d.title,
                    "created_at": d.created_at,
                    "updated_at": d.updated_at,
                })
            })
            .collect();
        outln!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(());
    }
    if docs.is_empty() {
        outln!("(文書はありません — no documents)");
        return Ok(());
    }
    for d in docs {
        outln!(
            "{}  {:<12}  {}  {}",
            d.id,
            d.kind,
            when(d.updated_at),
            d.title
        );
    }
    Ok(())
}

pub fn print_history(kind: DocKind, entries: &[HistoryEntry], as_json: bool) -> Result<()> {
    if as_json {
        outln!("{}", serde_json::to_string_pretty(entries)?);
        return Ok(());
    }
    let catalog = if kind == DocKind::Survey {
        SurveyCatalog::embedded().ok()
    } else {
        None
    };
    for (n, e) in entries.iter().enumerate() {
        let o = &e.origin;
        let staff = o
            .staff
            .as_deref()
            .map(|s| format!(", 担当 {s}"))
            .unwrap_or_default();
        let action = match o.action.as_str() {
            "import" => "取込 (import)",
            "set" => "編集 (edit)",
            "complete" => "調査完了 (complete)",
            "reopen" => "作成中に戻す (reopen)",
            "submit" => "提出 (submit)",
            "amend" => "訂正 (amend)",
            "dismiss" => "警告を確認済み (dismiss)",
            "" => "変更 (change)",
            other => other,
        };
        outln!(
            "#{}  {}  端末 {}{}  {}  [{}]",
            n + 1,
            when(o.time_ms),
            o.device_name,
            staff,
            action,
            &e.hash[..12.min(e.hash.len())]
        );
        // The device the relay attests for the change's actor, and whether the change's
        // own claim differs from it.
        match &e.attested {
            Some(_) => outln!("    端末（中継サーバーの証明）: {}", attested_label(e)),
            None => outln!(
                "    端末（中継サーバーの証明）: {} (not attested yet)",
                attested_label(e)
            ),
        }
        if let Some(text) = declared_mismatch(e) {
            outln!(
                "    ※ {text} (the device name the change declares differs from the device the relay attests)"
            );
        }
        if n == 0 && o.action == "import" {
            outln!("    作成 (created with {} fields)", e.fields.len());
            continue;
        }
        for f in e.fields.iter().take(20) {
            match (&f.before, &f.after) {
                (Some(b), Some(a)) => outln!(
                    "    {}: {} → {}",
                    f.path,
                    with_label(catalog.as_ref(), &f.path, b),
                    with_label(catalog.as_ref(), &f.path, a)
                ),
                (None, Some(a)) => outln!(
                    "    {}: + {}",
                    f.path,
                    with_label(catalog.as_ref(), &f.path, a)
                ),
                (Some(b), None) => outln!(
                    "    {}: − {} (removed)",
                    f.path,
                    with_label(catalog.as_ref(), &f.path, b)
                ),
                (None, None) => {}
            }
        }
        if e.fields.len() > 20 {
            outln!("    … and {} more fields", e.fields.len() - 20);
        }
    }
    Ok(())
}

pub fn print_conflicts(conflicts: &[Conflict], as_json: bool) -> Result<()> {
    if as_json {
        outln!("{}", serde_json::to_string_pretty(conflicts)?);
        return Ok(());
    }
    if conflicts.is_empty() {
        outln!("競合はありません (no conflicts)");
        return Ok(());
    }
    let catalog = SurveyCatalog::embedded().ok();
    for c in conflicts {
        outln!("{}", c.path);
        for v in &c.values {
            let staff = v
                .staff
                .as_deref()
                .map(|s| format!(", 担当 {s}"))
                .unwrap_or_default();
            outln!(
                "    {}  — 端末 {}{}, {}{}",
                with_label(catalog.as_ref(), &c.path, &v.value),
                v.device,
                staff,
                when(v.time_ms),
                if v.current {
                    "  (現在の表示 / shown now)"
                } else {
                    ""
                }
            );
        }
    }
    Ok(())
}

/// One problem for the command line: the Japanese sentence, then the English one when it
/// says something else.
pub fn issue_text(i: &musubi_engine::schema::Issue) -> String {
    if i.ja == i.message {
        i.ja.clone()
    } else {
        format!("{} ({})", i.ja, i.message)
    }
}

/// The error text for stderr: for invalid input, one line per problem naming the path,
/// with the problem's stable code in brackets.
pub fn describe_error(err: &anyhow::Error) -> String {
    for cause in err.chain() {
        if let Some(EngineError::Invalid {
            source_name,
            issues,
        }) = cause.downcast_ref::<EngineError>()
        {
            let mut out = format!(
                "{source_name}: 入力内容に誤りがあるため、何も書き込みませんでした (invalid input; nothing was written)"
            );
            for i in issues {
                // The stable code last, for scripts and for looking it up.
                out.push_str(&format!(
                    "\n  {source_name}: {}: {} [{}]",
                    display_path(&i.path),
                    issue_text(i),
                    i.code
                ));
            }
            return out;
        }
    }
    let mut out = err.to_string();
    for cause in err.chain().skip(1) {
        out.push_str(&format!(": {cause}"));
    }
    out
}

fn display_path(p: &str) -> &str {
    if p.is_empty() { "(document)" } else { p }
}

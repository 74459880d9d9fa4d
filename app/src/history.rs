//! The words for a document's audit history that the command line and the app both
//! show (`musubi doc history`, the app's 照合 screen).

use musubi_engine::doc::HistoryEntry;

/// The device the relay attests for a change, for people: its certificate's name (else
/// its device id), or that it is not attested yet.
pub fn attested_label(entry: &HistoryEntry) -> String {
    match &entry.attested {
        Some(a) => match &a.name {
            Some(name) => name.clone(),
            None => format!("端末ID {}（名前の記録なし）", a.device),
        },
        None => "未確認（まだ同期されていません）".to_owned(),
    }
}

/// The plain sentence saying that a change's self-declared device name differs from the
/// device the relay attests, if it does.
pub fn declared_mismatch(entry: &HistoryEntry) -> Option<String> {
    entry.declared_differs.then(|| {
        format!(
            "自己申告の端末名（{}）は中継サーバーが証明する端末（{}）と異なります",
            entry.origin.device_name,
            attested_label(entry)
        )
    })
}

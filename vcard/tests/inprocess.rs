//! The verifier against the virtual card in-process (no pcscd): the happy path and every
//! fault, each a clear error. The same scenarios run through pcscd + vpcd in
//! `app/tests/it/card.rs`.

#![allow(clippy::unwrap_used)]

use musubi_engine::card::compare::{FieldMatch, Record};
use musubi_engine::card::evidence::StatementBase;
use musubi_engine::card::reader::PinKind;
use musubi_engine::card::roots::{AnchorSource, TrustStore};
use musubi_engine::card::{
    CardError, PinSource, TransportError, VerifyError, VerifyOptions, verify_card,
};
use musubi_engine::ids::DocId;
use musubi_vcard::card::{Corrupt, Counters, VirtualCard};
use musubi_vcard::pki::TestPki;
use musubi_vcard::{CertChoice, Holder, InProcess, build};
use std::sync::OnceLock;
use zeroize::Zeroizing;

fn pki() -> &'static (tempfile::TempDir, TestPki) {
    static PKI: OnceLock<(tempfile::TempDir, TestPki)> = OnceLock::new();
    PKI.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let pki = TestPki::load_or_create(dir.path()).unwrap();
        (dir, pki)
    })
}

fn anchors() -> TrustStore {
    let mut t = TrustStore::bundled().unwrap();
    let pem = std::fs::read_to_string(pki().0.path().join("trust-anchor.pem")).unwrap();
    t.add_pem(&pem).unwrap();
    t
}

struct Pins(&'static str, &'static str, Vec<(PinKind, u8)>);
impl PinSource for Pins {
    fn pin(&mut self, kind: PinKind, remaining: u8) -> Option<Zeroizing<String>> {
        self.2.push((kind, remaining));
        Some(Zeroizing::new(
            match kind {
                PinKind::Auth => self.0,
                PinKind::Support => self.1,
            }
            .to_owned(),
        ))
    }
}

fn card(cert: CertChoice, corrupt: Corrupt, counters: Counters) -> InProcess {
    let content = build(&pki().1, &Holder::default(), cert).unwrap();
    InProcess::new(VirtualCard::new(content, counters, corrupt))
}

fn opts(allow_last_try: bool) -> VerifyOptions {
    VerifyOptions {
        now: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64,
        allow_last_try,
        basic4: true,
        statement: StatementBase {
            registration: DocId::random(),
            person: "ab".repeat(32),
            office: "1370100016".to_owned(),
            device: "cd".repeat(16),
            nonce: rand::random(),
        },
        record: Record {
            name: Some("結城 花子".to_owned()),
            birth_date: Some("1944-05-12".to_owned()),
        },
    }
}

fn run(
    t: &mut InProcess,
    pins: &mut Pins,
    allow: bool,
) -> Result<musubi_engine::card::Verified, VerifyError> {
    verify_card(&mut *t, &anchors(), &opts(allow), pins)
}

fn never_touched_my_number(t: &InProcess) {
    for line in &t.card.log {
        assert!(
            !(line.contains("df=support")
                && (line.contains("ef=0001") || line.contains("ef=0014"))),
            "My Number EF touched: {line}"
        );
    }
}

#[test]
fn happy_path_verifies_and_never_touches_the_my_number() {
    let mut t = card(CertChoice::Valid, Corrupt::None, Counters::default());
    let mut pins = Pins("1234", "1234", vec![]);
    let v = run(&mut t, &mut pins, false).unwrap();
    assert_eq!(v.cert.root_source, AnchorSource::Configured);
    assert!(v.card_ca_matches_root);
    let b4 = v.basic4.as_ref().unwrap();
    assert!(b4.check.digest_ok && b4.check.df33_ok);
    assert_eq!(b4.items.birth_date, "1944-05-12");
    assert_eq!(b4.items.name, "結城　花子");
    // The 入力補助 PIN first: the comparison goes into what the card signs, last.
    assert_eq!(pins.2, vec![(PinKind::Support, 3), (PinKind::Auth, 3)]);
    assert_eq!(v.comparison, (FieldMatch::Match, FieldMatch::Match));
    assert_eq!(
        (v.statement.name, v.statement.birth_date),
        (FieldMatch::Match, FieldMatch::Match)
    );
    never_touched_my_number(&t);
    let sign = t.card.log.iter().position(|l| l.contains("cmd=802A0080"));
    let basic4 = t
        .card
        .log
        .iter()
        .position(|l| l.contains("df=support ef=0002"));
    assert!(sign > basic4 && basic4.is_some(), "the card signs last");
    // Nothing personal in the result's Debug.
    let debug = format!("{v:?}");
    assert!(
        !debug.contains("結城") && !debug.contains(&"ab".repeat(32)),
        "{debug}"
    );
}

#[test]
fn wrong_pin_counts_down_then_locks() {
    let mut t = card(CertChoice::Valid, Corrupt::None, Counters::default());
    let err = run(&mut t, &mut Pins("9999", "1234", vec![]), false).unwrap_err();
    assert_eq!(
        err,
        VerifyError::Card(CardError::WrongPin {
            kind: PinKind::Auth,
            remaining: 2
        })
    );
    let err = run(&mut t, &mut Pins("9999", "1234", vec![]), false).unwrap_err();
    assert!(matches!(
        err,
        VerifyError::Card(CardError::WrongPin { remaining: 1, .. })
    ));
    // One try left: refused without confirmation, and no try is spent.
    let err = run(&mut t, &mut Pins("9999", "1234", vec![]), false).unwrap_err();
    assert_eq!(
        err,
        VerifyError::Card(CardError::LastTryNotConfirmed {
            kind: PinKind::Auth
        })
    );
    assert_eq!(t.card.counters.auth, 1);
    let err = run(&mut t, &mut Pins("9999", "1234", vec![]), true).unwrap_err();
    assert!(matches!(
        err,
        VerifyError::Card(CardError::WrongPin { remaining: 0, .. })
            | VerifyError::Card(CardError::PinLocked(_))
    ));
    let err = run(&mut t, &mut Pins("1234", "1234", vec![]), true).unwrap_err();
    assert_eq!(err, VerifyError::Card(CardError::PinLocked(PinKind::Auth)));
    assert!(err.to_string().contains("市区町村の窓口"));
}

#[test]
fn an_unconfirmed_last_try_stops_before_the_support_pin() {
    let mut t = card(
        CertChoice::Valid,
        Corrupt::None,
        Counters {
            auth: 1,
            support: 3,
        },
    );
    let mut pins = Pins("1234", "1234", vec![]);
    let err = run(&mut t, &mut pins, false).unwrap_err();
    assert_eq!(
        err,
        VerifyError::Card(CardError::LastTryNotConfirmed {
            kind: PinKind::Auth
        })
    );
    assert!(pins.2.is_empty(), "a PIN was asked for");
    assert!(!t.card.log.iter().any(|l| l.contains("df=support")));
}

#[test]
fn right_pin_resets_the_counter() {
    let mut t = card(
        CertChoice::Valid,
        Corrupt::None,
        Counters {
            auth: 2,
            support: 3,
        },
    );
    run(&mut t, &mut Pins("1234", "1234", vec![]), false).unwrap();
    assert_eq!(t.card.counters.auth, 3);
}

#[test]
fn malformed_pin_is_never_sent() {
    let mut t = card(CertChoice::Valid, Corrupt::None, Counters::default());
    let err = run(&mut t, &mut Pins("12345", "1234", vec![]), false).unwrap_err();
    assert_eq!(
        err,
        VerifyError::Card(CardError::PinFormat {
            kind: PinKind::Auth
        })
    );
    assert_eq!(t.card.counters.auth, 3);
}

#[test]
fn expired_and_foreign_certificates_are_refused_before_any_pin() {
    for (choice, want) in [
        (CertChoice::Expired, "有効期間外"),
        (CertChoice::Foreign, "発行者を確認できません"),
    ] {
        let mut t = card(choice, Corrupt::None, Counters::default());
        let mut pins = Pins("1234", "1234", vec![]);
        let err = run(&mut t, &mut pins, false).unwrap_err();
        assert!(err.to_string().contains(want), "{err}");
        assert!(pins.2.is_empty(), "a PIN was asked for");
        assert!(!t.card.log.iter().any(|l| l.contains("cmd=00200080")));
    }
}

#[test]
fn corrupt_responses_are_clear_errors() {
    for corrupt in [
        Corrupt::Cert,
        Corrupt::Signature,
        Corrupt::Short,
        Corrupt::Status,
        Corrupt::Basic4,
    ] {
        let mut t = card(CertChoice::Valid, corrupt, Counters::default());
        let err = run(&mut t, &mut Pins("1234", "1234", vec![]), false).unwrap_err();
        let text = err.to_string();
        assert!(!text.contains("結城"), "personal data in the error: {text}");
        match corrupt {
            Corrupt::Cert => assert!(matches!(err, VerifyError::Cert(_))),
            Corrupt::Signature => assert_eq!(err, VerifyError::BadSignature),
            Corrupt::Short | Corrupt::Status => assert!(matches!(err, VerifyError::Card(_))),
            Corrupt::Basic4 => assert!(matches!(err, VerifyError::Basic4(_))),
            Corrupt::None => unreachable!(),
        }
    }
}

#[test]
fn removal_mid_read_is_reported() {
    let mut t = card(CertChoice::Valid, Corrupt::None, Counters::default());
    t.remove_after = Some(4);
    let err = run(&mut t, &mut Pins("1234", "1234", vec![]), false).unwrap_err();
    assert_eq!(
        err,
        VerifyError::Card(CardError::Transport(TransportError::Removed))
    );
}

#[test]
fn not_a_my_number_card() {
    let mut t = card(CertChoice::Valid, Corrupt::None, Counters::default());
    let mut s = musubi_engine::card::reader::CardSession::new(&mut t);
    // Selecting an unknown AID gets 6A82; for the JPKI AID that means "not a My Number card".
    assert!(s.select_ap([0xA0, 0, 0, 0, 3, 0, 0, 0, 0, 0]).is_err());
    let guard = s.select_ef(0x0001);
    assert_eq!(guard, Err(CardError::Forbidden(0x0001)));
}

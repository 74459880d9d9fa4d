//! The certificate exchanges between a device and its relay: redeeming an enrollment (the
//! tablet's first connection) and renewing a certificate over the sync connection. The
//! key pair is always made on the device; only public keys and certificates travel.
//!
//! # Enrollment (ALPN [`tls::ALPN_ENROLL`])
//!
//! The tablet makes a key pair, presents a self-signed certificate naming only the device
//! id it asks for ([`pki::DeviceKey::enrollment_cert`]), opens one bidirectional stream and
//! sends `enroll {protocol, device_id, secret}`. The relay answers `enrolled {cert_pem}` (a
//! certificate of the office CA for the key the tablet proved in the handshake, with the
//! identity of the relay's pending record) or `refused {code, message}`, and closes.
//!
//! # Renewal (ALPN `musubi/1`, after the sync session)
//!
//! When its certificate has less than [`pki::RENEW_BEFORE`] left, the device, once its
//! sync session has finished, opens a second stream on the same connection and sends
//! `renew {protocol, public_key}` with a fresh key pair; the relay answers `renewed
//! {cert_pem}` (same device id, name and office) or `refused`.
//!
//! Frames are CBOR one-key maps with a `u32` big-endian length prefix like sync frames,
//! at most [`MAX_CERT_FRAME_BYTES`]; see `docs/protocol.md`.

use std::fmt;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use super::enroll::EnrollmentTicket;
use super::error::NetError;
use super::pki::{self, DeviceKey};
use super::quic::{self, RelayConnection, SyncFailure, TransportSettings, close};
use super::tls::{self, DeviceCredentials};

/// Version of the exchange frames.
pub const PROTOCOL: u32 = 1;
/// Longest exchange frame either side accepts (a certificate PEM is under 1 KB).
pub const MAX_CERT_FRAME_BYTES: usize = 8 * 1024;
/// Longest time for a whole exchange (request to answer) on either side.
pub const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(15);

/// The `code` of a `refused` frame.
pub mod refusal {
    /// The enrollment was redeemed already (by another key).
    pub const USED: &str = "enrollment_used";
    /// No pending enrollment matches (unknown device id, wrong secret, cancelled).
    pub const UNKNOWN: &str = "enrollment_unknown";
    /// The pending enrollment expired before it was redeemed.
    pub const EXPIRED: &str = "enrollment_expired";
    /// The pending enrollment was locked after too many wrong secrets.
    pub const LOCKED: &str = "enrollment_locked";
    /// The certificate has plenty of time left; no renewal now.
    pub const NOT_DUE: &str = "renewal_not_due";
    /// The request was malformed.
    pub const BAD_REQUEST: &str = "bad_request";
    /// The relay failed internally; try again later.
    pub const INTERNAL: &str = "internal";
}

/// One frame of a certificate exchange.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CertFrame {
    /// Device → relay: redeem an enrollment.
    Enroll {
        /// [`PROTOCOL`].
        protocol: u32,
        /// The device id from the enrollment file (must match the handshake certificate).
        device_id: String,
        /// The enrollment secret from the file.
        secret: ByteBuf,
    },
    /// Relay → device: the certificate issued for the handshake key.
    Enrolled {
        /// The certificate, PEM.
        cert_pem: String,
    },
    /// Device → relay: a certificate for a fresh key, same identity.
    Renew {
        /// [`PROTOCOL`].
        protocol: u32,
        /// SubjectPublicKeyInfo DER of the new key (ECDSA P-256).
        public_key: ByteBuf,
    },
    /// Relay → device: the renewed certificate.
    Renewed {
        /// The certificate, PEM.
        cert_pem: String,
    },
    /// Relay → device: the request is refused.
    Refused {
        /// One of [`refusal`].
        code: String,
        /// An English sentence (no secret, no name).
        message: String,
    },
}

impl fmt::Debug for CertFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CertFrame::Refused { code, .. } => write!(f, "CertFrame::Refused({code})"),
            other => write!(f, "CertFrame::{}", other.name()),
        }
    }
}

impl CertFrame {
    /// The frame's name on the wire.
    pub fn name(&self) -> &'static str {
        match self {
            CertFrame::Enroll { .. } => "enroll",
            CertFrame::Enrolled { .. } => "enrolled",
            CertFrame::Renew { .. } => "renew",
            CertFrame::Renewed { .. } => "renewed",
            CertFrame::Refused { .. } => "refused",
        }
    }

    /// CBOR bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        // Writing plain data into a Vec cannot fail.
        if ciborium::into_writer(self, &mut out).is_err() {
            out.clear();
        }
        out
    }

    /// Parses a frame body (at most [`MAX_CERT_FRAME_BYTES`]); the error names the part.
    pub fn decode(bytes: &[u8]) -> Result<CertFrame, NetError> {
        if bytes.len() > MAX_CERT_FRAME_BYTES {
            return Err(NetError::invalid(
                "certificate exchange frame",
                format!("longer than {MAX_CERT_FRAME_BYTES} bytes"),
            ));
        }
        ciborium::from_reader(bytes).map_err(|_| {
            NetError::invalid(
                "certificate exchange frame",
                "not one of enroll, enrolled, renew, renewed, refused",
            )
        })
    }

    /// A `refused` frame.
    pub fn refused(code: &str, message: &str) -> CertFrame {
        CertFrame::Refused {
            code: code.to_owned(),
            message: message.to_owned(),
        }
    }
}

/// Why an enrollment (or a renewal) did not give this device a certificate.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EnrollFailure {
    /// The enrollment was already redeemed by another tablet.
    #[error(
        "this enrollment file and code have already been used to enroll a device; ask the office for a new enrollment (the relay has recorded this attempt)"
    )]
    AlreadyUsed,
    /// The relay has no pending enrollment for this file.
    #[error(
        "the relay has no waiting enrollment for this file (it was cancelled, replaced by a newer one, or made by another relay); ask the office for a new enrollment"
    )]
    Unknown,
    /// The enrollment expired before it was used.
    #[error("this enrollment has expired; ask the office for a new one")]
    Expired,
    /// The enrollment was locked after too many wrong attempts.
    #[error(
        "this enrollment was locked after too many wrong attempts; ask the office for a new one"
    )]
    Locked,
    /// The relay refused for another reason (its code and message).
    #[error("the relay refused: {message} ({code})")]
    Refused {
        /// The refusal code.
        code: String,
        /// The relay's message.
        message: String,
    },
    /// The connection failed (network, relay not running, untrusted relay, …).
    #[error("{0}")]
    Connection(SyncFailure),
    /// The relay's answer was not what the protocol allows.
    #[error("the relay's answer is not usable: {message}")]
    Protocol {
        /// What was wrong.
        message: String,
    },
    /// This device failed (its key, its store).
    #[error("enrollment failed on this device: {message}")]
    Local {
        /// What failed.
        message: String,
    },
}

impl EnrollFailure {
    /// A sentence in Japanese for the person at the tablet.
    pub fn japanese(&self) -> &'static str {
        match self {
            EnrollFailure::AlreadyUsed => {
                "この登録ファイルと登録コードはすでに別の端末の登録に使われています。この端末は登録できません。事務所に新しい登録ファイルを依頼してください（この試みは中継サーバーに記録されました）。"
            }
            EnrollFailure::Unknown => {
                "中継サーバーにこの登録ファイルの受付がありません（取り消されたか、新しい登録ファイルに置き換えられました）。事務所に新しい登録ファイルを依頼してください。"
            }
            EnrollFailure::Expired => {
                "この登録ファイルの有効期限が切れています。事務所に新しい登録ファイルを依頼してください。"
            }
            EnrollFailure::Locked => {
                "誤った登録の試みが多すぎたため、この登録ファイルは使えなくなりました。事務所に新しい登録ファイルを依頼してください。"
            }
            EnrollFailure::Connection(SyncFailure::Unreachable { .. }) => {
                "中継サーバーに接続できません。ネットワークを確認してから、もう一度登録してください。"
            }
            EnrollFailure::Connection(SyncFailure::RelayUntrusted { .. }) => {
                "接続先は事務所の中継サーバーではありません。何も送信していません。事務所に連絡してください。"
            }
            EnrollFailure::Connection(_) | EnrollFailure::Refused { .. } => {
                "中継サーバーが登録を受け付けませんでした。事務所に連絡してください。"
            }
            EnrollFailure::Protocol { .. } => {
                "中継サーバーの応答が正しくありません。事務所に連絡してください。"
            }
            EnrollFailure::Local { .. } => "この端末で登録の処理に失敗しました。",
        }
    }

    fn from_refusal(code: &str, message: String) -> EnrollFailure {
        match code {
            refusal::USED => EnrollFailure::AlreadyUsed,
            refusal::UNKNOWN => EnrollFailure::Unknown,
            refusal::EXPIRED => EnrollFailure::Expired,
            refusal::LOCKED => EnrollFailure::Locked,
            other => EnrollFailure::Refused {
                code: other.chars().take(64).collect(),
                message: message.chars().take(200).collect(),
            },
        }
    }
}

fn local(e: NetError) -> EnrollFailure {
    EnrollFailure::Local {
        message: e.to_string(),
    }
}

fn protocol(message: impl Into<String>) -> EnrollFailure {
    EnrollFailure::Protocol {
        message: message.into(),
    }
}

/// Sends one request on a new stream of `conn` and reads the one answer.
async fn exchange(
    conn: &quinn::Connection,
    address: &str,
    request: &CertFrame,
) -> Result<CertFrame, EnrollFailure> {
    let lost = |e: quinn::ConnectionError| {
        EnrollFailure::Connection(quic::classify_connection_error(&e, address))
    };
    let run = async {
        let (mut send, mut recv) = conn.open_bi().await.map_err(lost)?;
        let transport = |e: quic::QuicError| match e.connection_error() {
            Some(c) => lost(c.clone()),
            None => protocol(e.to_string()),
        };
        quic::write_frame(&mut send, &request.encode(), MAX_CERT_FRAME_BYTES)
            .await
            .map_err(transport)?;
        let _ = send.finish();
        match quic::read_frame(&mut recv, MAX_CERT_FRAME_BYTES).await {
            Ok(Some(body)) => CertFrame::decode(&body).map_err(|e| protocol(e.to_string())),
            Ok(None) | Err(_) => {
                // The relay closed instead of answering: its close says why.
                let reason = tokio::time::timeout(Duration::from_millis(500), conn.closed()).await;
                match reason {
                    Ok(e) => Err(lost(e)),
                    Err(_) => Err(protocol("the relay ended the exchange without an answer")),
                }
            }
        }
    };
    tokio::time::timeout(EXCHANGE_TIMEOUT, run)
        .await
        .unwrap_or_else(|_| Err(protocol("no answer from the relay in time")))
}

/// Credentials from a certificate the relay sent for `key`: refused unless it is issued
/// by the pinned office CA, for this key, with exactly the expected identity.
fn credentials_for(
    expected: &pki::DeviceSubject,
    relay_address: &str,
    office_ca_pem: &str,
    key: &DeviceKey,
    cert_pem: &str,
) -> Result<DeviceCredentials, EnrollFailure> {
    let der = pki::cert_der_from_pem(cert_pem, "device certificate")
        .map_err(|e| protocol(e.to_string()))?;
    let ca = pki::cert_der_from_pem(office_ca_pem, "office CA certificate").map_err(local)?;
    if !pki::issued_by(&der, &ca) {
        return Err(protocol(
            "the certificate was not issued by this device's office CA",
        ));
    }
    let creds = DeviceCredentials {
        device_id: expected.device_id.clone(),
        device_name: expected.device_name.clone(),
        office: expected.office.clone(),
        cert_pem: cert_pem.to_owned(),
        key_pem: key.key_pem.clone(),
        office_ca_pem: office_ca_pem.to_owned(),
        relay_address: relay_address.to_owned(),
    };
    // The identity in the certificate and the key must be exactly ours.
    creds.validate().map_err(|e| protocol(e.to_string()))?;
    Ok(creds)
}

/// Redeems the enrollment of `ticket` at the relay (at `address`, default the ticket's)
/// with `key`, a key pair made on this device. Returns the device's credentials; nothing
/// is stored here (the caller keeps them in the encrypted store).
pub async fn redeem(
    ticket: &EnrollmentTicket,
    key: &DeviceKey,
    address: Option<&str>,
    settings: &TransportSettings,
) -> Result<DeviceCredentials, EnrollFailure> {
    let address = address.unwrap_or(&ticket.relay_address);
    let request = key.enrollment_cert(&ticket.device_id).map_err(local)?;
    let tls = tls::enroll_client_config(&ticket.office_ca_pem, &request).map_err(local)?;
    let remote = quic::resolve(address)
        .await
        .map_err(EnrollFailure::Connection)?;
    let endpoint =
        quic::client_endpoint(tls, remote, settings).map_err(|e| EnrollFailure::Local {
            message: e.to_string(),
        })?;
    let connection = quic::connect_on(&endpoint, remote, address, settings)
        .await
        .map_err(EnrollFailure::Connection)?;
    let conn = RelayConnection {
        endpoint,
        connection,
    };
    let answer = exchange(
        &conn.connection,
        address,
        &CertFrame::Enroll {
            protocol: PROTOCOL,
            device_id: ticket.device_id.clone(),
            secret: ByteBuf::from(ticket.secret.to_vec()),
        },
    )
    .await;
    conn.close(close::DONE, "enrollment done").await;
    let subject = pki::DeviceSubject {
        device_id: ticket.device_id.clone(),
        device_name: ticket.device_name.clone(),
        office: ticket.office.clone(),
    };
    read_answer(
        Exchange::Enroll,
        answer?,
        &subject,
        &ticket.relay_address,
        &ticket.office_ca_pem,
        key,
    )
}

/// The relay's check of the one request after a sync session (pure): the public key of a
/// `renew` frame of this protocol (read next with [`pki::device_public_key`]); otherwise
/// the sentence of the `bad_request` refusal.
pub fn renew_request(frame: &CertFrame) -> Result<&[u8], &'static str> {
    match frame {
        CertFrame::Renew {
            protocol,
            public_key,
        } if *protocol == PROTOCOL => Ok(public_key.as_slice()),
        _ => Err("only renew is accepted after a sync session"),
    }
}

/// Which exchange an answer belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exchange {
    /// `enroll` → `enrolled` (ALPN [`tls::ALPN_ENROLL`]).
    Enroll,
    /// `renew` → `renewed` (after a sync session).
    Renew,
}

/// The device's reading of the relay's answer to its request (pure): the credentials for
/// `key` if the answer is the certificate this exchange expects, issued by the pinned
/// office CA for exactly `expected` and `key`; the refusal it names; or a protocol error.
pub fn read_answer(
    exchange: Exchange,
    answer: CertFrame,
    expected: &pki::DeviceSubject,
    relay_address: &str,
    office_ca_pem: &str,
    key: &DeviceKey,
) -> Result<DeviceCredentials, EnrollFailure> {
    match (exchange, answer) {
        (Exchange::Enroll, CertFrame::Enrolled { cert_pem })
        | (Exchange::Renew, CertFrame::Renewed { cert_pem }) => {
            credentials_for(expected, relay_address, office_ca_pem, key, &cert_pem)
        }
        (_, CertFrame::Refused { code, message }) => {
            Err(EnrollFailure::from_refusal(&code, message))
        }
        (exchange, other) => Err(protocol(format!(
            "the relay answered {} to {}",
            other.name(),
            match exchange {
                Exchange::Enroll => "enroll",
                Exchange::Renew => "renew",
            }
        ))),
    }
}

/// The relay's check of the one request on an enrollment connection (pure): `asked` is the
/// device id of the handshake's enrollment certificate ([`pki::enrollment_request`]).
/// Returns the secret of an `enroll` frame of this protocol for exactly `asked` with a
/// secret of [`enroll::SECRET_BYTES`](super::enroll::SECRET_BYTES); otherwise the sentence
/// of the `bad_request` refusal.
pub fn enroll_request<'a>(frame: &'a CertFrame, asked: &str) -> Result<&'a [u8], &'static str> {
    match frame {
        CertFrame::Enroll {
            protocol,
            device_id,
            secret,
        } => {
            if *protocol != PROTOCOL {
                Err("unsupported exchange protocol version")
            } else if device_id != asked {
                Err("the device id differs from the enrollment certificate's")
            } else if secret.len() != super::enroll::SECRET_BYTES {
                Err("the enrollment secret has the wrong length")
            } else {
                Ok(secret.as_slice())
            }
        }
        CertFrame::Renew { .. } => Err("renew needs an enrolled device's sync connection"),
        _ => Err("only enroll is accepted on this connection"),
    }
}

/// Seconds since the Unix epoch.
fn unix(t: SystemTime) -> i64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// Whether a certificate ending at `not_after` (Unix seconds) is due for renewal at
/// `now`: less than [`pki::RENEW_BEFORE`] left.
pub fn renewal_due_at(not_after: i64, now: SystemTime) -> bool {
    let left = not_after.saturating_sub(unix(now));
    left < i64::try_from(pki::RENEW_BEFORE.as_secs()).unwrap_or(i64::MAX)
}

/// Whether this device's certificate is due for renewal now (an unreadable certificate is
/// not: the handshake would have failed).
pub fn renewal_due(creds: &DeviceCredentials) -> bool {
    pki::cert_der_from_pem(&creds.cert_pem, "device certificate")
        .and_then(|der| pki::peer_identity(&der))
        .is_ok_and(|id| renewal_due_at(id.not_after, SystemTime::now()))
}

/// Asks the relay, on the open sync connection `conn`, for a certificate for a fresh key
/// pair. Returns the new credentials (the caller stores them); the current ones stay valid
/// until they expire.
pub async fn renew(
    conn: &quinn::Connection,
    creds: &DeviceCredentials,
) -> Result<DeviceCredentials, EnrollFailure> {
    let key = DeviceKey::generate().map_err(local)?;
    let answer = exchange(
        conn,
        &creds.relay_address,
        &CertFrame::Renew {
            protocol: PROTOCOL,
            public_key: ByteBuf::from(key.spki_der.clone()),
        },
    )
    .await?;
    let subject = pki::DeviceSubject {
        device_id: creds.device_id.clone(),
        device_name: creds.device_name.clone(),
        office: creds.office.clone(),
    };
    read_answer(
        Exchange::Renew,
        answer,
        &subject,
        &creds.relay_address,
        &creds.office_ca_pem,
        &key,
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn frames_round_trip_and_hostile_bytes_are_errors() {
        let frames = [
            CertFrame::Enroll {
                protocol: PROTOCOL,
                device_id: "0".repeat(32),
                secret: ByteBuf::from(vec![7; 32]),
            },
            CertFrame::Enrolled {
                cert_pem: "pem".into(),
            },
            CertFrame::Renew {
                protocol: PROTOCOL,
                public_key: ByteBuf::from(vec![1; 91]),
            },
            CertFrame::Renewed {
                cert_pem: "pem".into(),
            },
            CertFrame::refused(refusal::USED, "used"),
        ];
        for f in frames {
            let bytes = f.encode();
            assert_eq!(CertFrame::decode(&bytes).unwrap(), f);
            // Every truncation is an error, never a panic.
            for len in 0..bytes.len() {
                assert!(CertFrame::decode(&bytes[..len]).is_err(), "{f:?} at {len}");
            }
        }
        let long = vec![0xA1; MAX_CERT_FRAME_BYTES + 1];
        let err = CertFrame::decode(&long).unwrap_err().to_string();
        assert!(err.contains("certificate exchange frame"), "{err}");
        // A sync frame is not an exchange frame.
        assert!(CertFrame::decode(&crate::sync::Frame::Done.encode()).is_err());
        // The secret never shows in Debug.
        let dbg = format!(
            "{:?}",
            CertFrame::Enroll {
                protocol: 1,
                device_id: "d".into(),
                secret: ByteBuf::from(b"SECRETSECRET".to_vec()),
            }
        );
        assert!(!dbg.contains("SECRET"), "{dbg}");
    }

    #[test]
    fn the_relay_accepts_only_a_well_formed_request_for_the_asked_id() {
        let asked = "0".repeat(32);
        let enroll = |protocol, id: &str, len| CertFrame::Enroll {
            protocol,
            device_id: id.to_owned(),
            secret: ByteBuf::from(vec![7; len]),
        };
        let ok = enroll(PROTOCOL, &asked, 32);
        assert_eq!(enroll_request(&ok, &asked), Ok(&[7u8; 32][..]));
        for (frame, part) in [
            (enroll(2, &asked, 32), "protocol"),
            (enroll(PROTOCOL, &"1".repeat(32), 32), "device id"),
            (enroll(PROTOCOL, &asked, 31), "secret"),
        ] {
            let err = enroll_request(&frame, &asked).unwrap_err();
            assert!(err.contains(part), "{err}");
        }
        let renew = |protocol| CertFrame::Renew {
            protocol,
            public_key: ByteBuf::from(vec![1; 91]),
        };
        assert!(enroll_request(&renew(PROTOCOL), &asked).is_err());
        assert_eq!(renew_request(&renew(PROTOCOL)), Ok(&[1u8; 91][..]));
        assert!(renew_request(&renew(2)).is_err());
        assert!(renew_request(&ok).is_err());
    }

    #[test]
    fn renewal_is_due_within_the_threshold_only() {
        let now = SystemTime::now();
        let n = unix(now);
        let days = |d: i64| d * 24 * 3600;
        assert!(!renewal_due_at(n + days(61), now));
        assert!(renewal_due_at(n + days(59), now));
        assert!(renewal_due_at(n - 10, now));
    }

    #[test]
    fn every_refusal_has_a_japanese_sentence() {
        for code in [
            refusal::USED,
            refusal::UNKNOWN,
            refusal::EXPIRED,
            refusal::LOCKED,
            refusal::NOT_DUE,
            refusal::INTERNAL,
        ] {
            let f = EnrollFailure::from_refusal(code, "m".into());
            assert!(f.japanese().contains("。"), "{code}");
        }
        assert!(EnrollFailure::AlreadyUsed.japanese().contains("すでに"));
    }
}

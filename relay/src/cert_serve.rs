//! The relay's side of the certificate exchanges (`musubi_engine::net::certx`):
//!
//! - an enrollment connection (ALPN `musubi-enroll/1`, a self-signed enrollment
//!   certificate) gets exactly one exchange: one `enroll` frame in, one answer out, then
//!   the connection is closed. Nothing else is read or served on it; it never holds a
//!   session permit (only the handshake permit, for at most [`certx::EXCHANGE_TIMEOUT`]);
//! - after a sync session ends cleanly, the device may open one more stream for a `renew`
//!   frame; the relay answers it and waits for the device to close.

use std::time::Duration;

use musubi_engine::net::certx::{self, CertFrame, MAX_CERT_FRAME_BYTES, refusal};
use musubi_engine::net::pki::{self, PeerIdentity};
use musubi_engine::net::quic::quinn::{Connection, RecvStream, SendStream, VarInt};
use musubi_engine::net::quic::{self, close, peer_certificates};
use musubi_engine::net::tls::ALPN_ENROLL;

use crate::RelayDir;
use crate::enrollment::{RedeemRequest, Refused};

/// Whether the connection negotiated the enrollment ALPN.
pub(crate) fn is_enrollment(conn: &Connection) -> bool {
    conn.handshake_data()
        .and_then(|d| {
            d.downcast::<musubi_engine::net::quic::quinn::crypto::rustls::HandshakeData>()
                .ok()
        })
        .and_then(|d| d.protocol)
        .is_some_and(|p| p == ALPN_ENROLL)
}

fn refused(r: Refused) -> CertFrame {
    CertFrame::refused(r.code, r.message)
}

fn bad_request(message: &str) -> CertFrame {
    CertFrame::refused(refusal::BAD_REQUEST, message)
}

fn internal() -> CertFrame {
    CertFrame::refused(refusal::INTERNAL, "the relay failed; try again later")
}

/// Reads one exchange frame (the length is checked before anything is allocated).
async fn read_request(recv: &mut RecvStream) -> Result<CertFrame, CertFrame> {
    match quic::read_frame(recv, MAX_CERT_FRAME_BYTES).await {
        Ok(Some(body)) => {
            CertFrame::decode(&body).map_err(|_| bad_request("not an exchange frame"))
        }
        Ok(None) => Err(bad_request("no request was sent")),
        Err(_) => Err(bad_request("the request frame is too long or cut short")),
    }
}

/// Writes the answer, ends the stream and waits (briefly) until the device has it.
async fn answer(send: &mut SendStream, frame: &CertFrame) {
    if quic::write_frame(send, &frame.encode(), MAX_CERT_FRAME_BYTES)
        .await
        .is_ok()
    {
        let _ = send.finish();
        let _ = tokio::time::timeout(Duration::from_secs(2), send.stopped()).await;
    }
}

/// Serves one enrollment connection and closes it.
pub(crate) async fn serve_enrollment(conn: &Connection, dir: &RelayDir, validity: Duration) {
    let leaf = peer_certificates(conn).and_then(|c| c.into_iter().next());
    let Some(leaf) = leaf else {
        close(
            conn,
            close::UNKNOWN_DEVICE,
            "an enrollment needs a certificate",
        );
        return;
    };
    let Some(asked) = pki::enrollment_request(leaf.as_ref()) else {
        // An office certificate on the enrollment ALPN: nothing to do here.
        close(
            conn,
            close::PROTOCOL,
            "this connection is for enrollment only",
        );
        return;
    };
    let Ok(spki) = pki::cert_spki(leaf.as_ref()) else {
        close(
            conn,
            close::PROTOCOL,
            "the enrollment certificate is unreadable",
        );
        return;
    };
    let exchange = async {
        let (mut send, mut recv) = conn.accept_bi().await.ok()?;
        let reply = match read_request(&mut recv).await {
            Err(reply) => reply,
            Ok(frame) => match certx::enroll_request(&frame, &asked) {
                Err(message) => bad_request(message),
                Ok(secret) => {
                    let req = RedeemRequest {
                        device_id: &asked,
                        secret,
                        spki_der: &spki,
                        validity,
                    };
                    match tokio::task::block_in_place(|| dir.redeem(&req)) {
                        Ok(Ok(cert_pem)) => CertFrame::Enrolled { cert_pem },
                        Ok(Err(r)) => refused(r),
                        Err(e) => {
                            tracing::error!(error = %e, "enrollment failed inside the relay");
                            internal()
                        }
                    }
                }
            },
        };
        answer(&mut send, &reply).await;
        Some(reply)
    };
    match tokio::time::timeout(certx::EXCHANGE_TIMEOUT, exchange).await {
        Ok(Some(CertFrame::Enrolled { .. })) => {
            // The device closes once it has the certificate.
            let _ = tokio::time::timeout(Duration::from_secs(2), conn.closed()).await;
            close(conn, close::DONE, "enrolled");
        }
        Ok(Some(_)) => close(conn, close::UNKNOWN_DEVICE, "enrollment refused"),
        Ok(None) => close(conn, close::PROTOCOL, "no enrollment request"),
        Err(_) => {
            tracing::info!(device = %asked, "enrollment exchange timed out");
            close(
                conn,
                close::PROTOCOL,
                "the enrollment exchange took too long",
            );
        }
    }
}

/// After a sync session that ended cleanly: serves at most one `renew` on a new stream,
/// then waits for the device to close (at most `closing_timeout` for each step).
pub(crate) async fn after_session(
    conn: &Connection,
    dir: &RelayDir,
    peer: &PeerIdentity,
    validity: Duration,
    closing_timeout: Duration,
) {
    let stream = tokio::select! {
        _ = conn.closed() => return,
        s = conn.accept_bi() => s,
        () = tokio::time::sleep(closing_timeout) => return,
    };
    let Ok((mut send, mut recv)) = stream else {
        return;
    };
    let exchange = async {
        let reply = match read_request(&mut recv).await {
            Err(reply) => reply,
            Ok(frame) => match certx::renew_request(&frame) {
                Err(message) => bad_request(message),
                Ok(public_key) => {
                    match tokio::task::block_in_place(|| dir.renew(peer, public_key, validity)) {
                        Ok(Ok(cert_pem)) => CertFrame::Renewed { cert_pem },
                        Ok(Err(r)) => {
                            tracing::warn!(device = %peer.device_id, code = r.code, "certificate renewal refused");
                            refused(r)
                        }
                        Err(e) => {
                            tracing::error!(device = %peer.device_id, error = %e, "certificate renewal failed inside the relay");
                            internal()
                        }
                    }
                }
            },
        };
        answer(&mut send, &reply).await;
    };
    if tokio::time::timeout(certx::EXCHANGE_TIMEOUT, exchange)
        .await
        .is_err()
    {
        close(conn, close::PROTOCOL, "the renewal took too long");
        return;
    }
    let _ = tokio::time::timeout(closing_timeout, conn.closed()).await;
}

fn close(conn: &Connection, code: u32, reason: &str) {
    conn.close(VarInt::from_u32(code), reason.as_bytes());
}

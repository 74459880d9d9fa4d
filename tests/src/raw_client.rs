//! A modified client: it holds a real enrolled device's credentials (a stolen or tampered
//! tablet) but none of our session logic. It writes the frames itself over the real QUIC
//! connection, sends hand-made automerge changes, and reports exactly what the relay
//! answered, so tests can check that every rule a tablet enforces is enforced again by the
//! relay.

use std::path::Path;
use std::time::Duration;

use musubi_engine::ids::DocId;
use musubi_engine::net::quic::{self, TransportSettings, quinn};
use musubi_engine::net::tls::DeviceCredentials;
use musubi_engine::sync::{Frame, MAX_FRAME_BYTES, PROTOCOL_VERSION};
use serde_bytes::ByteBuf;

/// How long the client waits for any one frame.
const FRAME_WAIT: Duration = Duration::from_secs(20);

/// One connection and stream to the relay, driven frame by frame.
pub struct RawClient {
    rt: tokio::runtime::Runtime,
    conn: quic::RelayConnection,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
}

/// What the relay sent after `hello`, up to its first `idle`.
#[derive(Debug, Default)]
pub struct Welcomed {
    /// Whole documents it sent (`doc_data`), by id.
    pub docs: Vec<(DocId, Vec<u8>)>,
}

/// Opens an enrollment file with its code and redeems it at the relay named in the file,
/// with a key pair made here: the device's credentials, private key included (what a thief
/// who has the tablet and its passphrase holds).
pub fn credentials(file: &Path, code: &str) -> DeviceCredentials {
    let bytes = std::fs::read(file).unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
    let ticket = musubi_engine::net::enroll::open(&bytes, code)
        .unwrap_or_else(|e| panic!("opening the enrollment file: {e}"));
    let key = musubi_engine::net::pki::DeviceKey::generate()
        .unwrap_or_else(|e| panic!("making a key: {e}"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    rt.block_on(musubi_engine::net::certx::redeem(
        &ticket,
        &key,
        None,
        &TransportSettings::default(),
    ))
    .unwrap_or_else(|e| panic!("redeeming the enrollment: {e}"))
}

impl RawClient {
    /// Connects with `creds` to the relay at `addr` and opens the sync stream.
    pub fn connect(creds: &DeviceCredentials, addr: &str) -> RawClient {
        RawClient::try_connect(creds, addr).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`connect`](Self::connect), or why it failed.
    pub fn try_connect(creds: &DeviceCredentials, addr: &str) -> Result<RawClient, String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("runtime: {e}"))?;
        let (conn, send, recv) = rt.block_on(async {
            let conn = quic::connect(creds, Some(addr), &TransportSettings::default())
                .await
                .map_err(|e| format!("connecting to the relay: {e}"))?;
            let (send, recv) = conn
                .connection
                .open_bi()
                .await
                .map_err(|e| format!("opening the stream: {e}"))?;
            Ok::<_, String>((conn, send, recv))
        })?;
        Ok(RawClient {
            rt,
            conn,
            send,
            recv,
        })
    }

    /// Writes raw bytes on the stream (half a length prefix, a lying prefix, garbage).
    pub fn send_bytes(&mut self, bytes: &[u8]) {
        let send = &mut self.send;
        self.rt
            .block_on(tokio::io::AsyncWriteExt::write_all(send, bytes))
            .unwrap_or_else(|e| panic!("writing raw bytes: {e}"));
    }

    /// Waits at most `limit` for the relay to close the connection: its close code and
    /// reason, or `None` if it stayed open.
    pub fn closed_within(&mut self, limit: Duration) -> Option<(u64, String)> {
        let conn = self.conn.connection.clone();
        let closed = self
            .rt
            .block_on(async { tokio::time::timeout(limit, conn.closed()).await })
            .ok()?;
        match closed {
            quinn::ConnectionError::ApplicationClosed(c) => Some((
                c.error_code.into_inner(),
                String::from_utf8_lossy(&c.reason).into_owned(),
            )),
            other => Some((u64::MAX, other.to_string())),
        }
    }

    /// Sends one frame.
    pub fn send(&mut self, frame: &Frame) {
        let body = frame.encode();
        let send = &mut self.send;
        self.rt
            .block_on(quic::write_frame(send, &body, MAX_FRAME_BYTES))
            .unwrap_or_else(|e| panic!("writing {}: {e}", frame.name()));
    }

    /// The next frame from the relay (`None`: the stream ended or nothing came in time).
    pub fn recv(&mut self) -> Option<Frame> {
        let recv = &mut self.recv;
        let body = self
            .rt
            .block_on(async {
                tokio::time::timeout(FRAME_WAIT, quic::read_frame(recv, MAX_FRAME_BYTES)).await
            })
            .ok()?
            .ok()??;
        Some(Frame::decode(&body).unwrap_or_else(|e| panic!("the relay sent a bad frame: {e}")))
    }

    /// Frames up to and including the next `idle` (or an `error`).
    pub fn until_idle(&mut self) -> Vec<Frame> {
        let mut frames = Vec::new();
        while let Some(f) = self.recv() {
            let stop = matches!(f, Frame::Idle { .. } | Frame::Error { .. });
            frames.push(f);
            if stop {
                return frames;
            }
        }
        panic!("the relay stopped before idle; got {frames:?}");
    }

    /// Sends `hello` as a device that holds nothing (cursor 0) under `actor`, and collects
    /// what the relay sends up to its first `idle`.
    pub fn hello(&mut self, actor: &[u8]) -> Welcomed {
        self.send(&Frame::Hello {
            protocol: PROTOCOL_VERSION,
            actor: ByteBuf::from(actor.to_vec()),
            epoch: None,
            cursor: 0,
            changed: Vec::new(),
            digest: ByteBuf::from(vec![0u8; 32]),
            caps: Vec::new(),
        });
        let mut out = Welcomed::default();
        for f in self.until_idle() {
            match f {
                Frame::DocData { id, bytes } => {
                    let id = musubi_engine::sync::frame::doc_id(&id)
                        .unwrap_or_else(|e| panic!("doc_data id: {e}"));
                    out.docs.push((id, bytes.into_vec()));
                }
                Frame::Error { code, message } => panic!("relay error {code}: {message}"),
                _ => {}
            }
        }
        out
    }

    /// Sends `doc_data` with `bytes` for `id`; the code of the relay's `doc_rejected` for
    /// it, or `None` when the relay took it.
    pub fn push(&mut self, id: DocId, bytes: Vec<u8>) -> Option<String> {
        self.send(&Frame::DocData {
            id: ByteBuf::from(id.as_bytes().to_vec()),
            bytes: ByteBuf::from(bytes),
        });
        let mut rejected = None;
        for f in self.until_idle() {
            match f {
                Frame::DocRejected { id: rid, code } if rid.as_slice() == id.as_bytes() => {
                    rejected = Some(code);
                }
                Frame::Error { code, message } => panic!("relay error {code}: {message}"),
                _ => {}
            }
        }
        rejected
    }

    /// Ends the session politely (`done`) and closes the connection.
    pub fn finish(mut self) {
        self.send(&Frame::Done);
        let conn = self.conn;
        self.rt.block_on(conn.close(quic::close::DONE, "done"));
    }
}

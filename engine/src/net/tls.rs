//! TLS for sync: rustls 0.23 with the ring provider, TLS 1.3 only, ALPN [`ALPN`], mutual
//! authentication with certificates of the office CA.
//!
//! - The device ([`client_config`]) trusts only the office CA from its enrollment (the CA
//!   is pinned: no system roots) and presents its own certificate.
//! - The relay ([`server_config`]) requires a client certificate that chains to the office
//!   CA, is within its validity, carries a musubi device identity, and is not revoked
//!   according to a [`RevocationCheck`] consulted during every handshake. A revoked device
//!   gets the TLS alert `certificate_revoked`; an expired one `certificate_expired`; one
//!   from another CA `unknown_ca`.
//! - [`classify_connection_error`] / [`classify_tls_error`] turn what the device sees into
//!   a [`FailureReason`] with a message for the person at the tablet.

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    AlertDescription, CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName,
    RootCertStore, ServerConfig, SignatureScheme,
};
use zeroize::Zeroizing;

use super::error::NetError;
use super::pki::{self, CertKey, PeerIdentity, cert_der_from_pem, key_der_from_pem};

pub use super::pki::RELAY_SERVER_NAME;

/// The ALPN protocol id of musubi sync, version 1.
pub const ALPN: &[u8] = b"musubi/1";

/// The ALPN protocol id of the enrollment exchange: a tablet with a key pair it made itself
/// (and a self-signed certificate naming only the device id it asks for) redeems its
/// one-time enrollment. Nothing else is served on such a connection.
pub const ALPN_ENROLL: &[u8] = b"musubi-enroll/1";

/// Decides during the handshake whether a device's certificate has been revoked.
///
/// Implementations must be cheap (they run on every handshake) and must see revocations
/// made while the server runs.
pub trait RevocationCheck: Send + Sync {
    /// True when the device must be refused.
    fn is_revoked(&self, peer: &PeerIdentity) -> bool;
}

/// A [`RevocationCheck`] that revokes nothing (tests and tools).
#[derive(Clone, Copy, Debug, Default)]
pub struct NothingRevoked;

impl RevocationCheck for NothingRevoked {
    fn is_revoked(&self, _peer: &PeerIdentity) -> bool {
        false
    }
}

/// What a device needs to sync: its identity, certificate and key, the office CA it pins,
/// and where the relay is. Installed by enrollment and kept inside the encrypted store.
#[derive(Clone, PartialEq, Eq)]
pub struct DeviceCredentials {
    /// Device id (32 lowercase hex digits), as in the certificate.
    pub device_id: String,
    /// Device name, as in the certificate.
    pub device_name: String,
    /// The device's office (事業所番号), as in the certificate.
    pub office: String,
    /// The device certificate, PEM.
    pub cert_pem: String,
    /// The device's private key, PKCS#8 PEM.
    pub key_pem: Zeroizing<String>,
    /// The office CA certificate, PEM: the only certificate the device trusts.
    pub office_ca_pem: String,
    /// The relay, `host:port` (IPv6 as `[addr]:port`).
    pub relay_address: String,
}

impl fmt::Debug for DeviceCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceCredentials")
            .field("device_id", &self.device_id)
            .field("device_name", &"[redacted]")
            .field("office", &self.office)
            .field("key_pem", &"[redacted]")
            .field("relay_address", &self.relay_address)
            .finish_non_exhaustive()
    }
}

impl DeviceCredentials {
    /// Checks that the parts belong together: the certificate parses and names this
    /// device id, name and office; the key parses and matches the certificate; the CA
    /// certificate parses; the relay address is `host:port`.
    pub fn validate(&self) -> Result<PeerIdentity, NetError> {
        let der = cert_der_from_pem(&self.cert_pem, "device certificate")?;
        let id = pki::peer_identity(&der)?;
        if id.device_id != self.device_id
            || id.device_name != self.device_name
            || id.office != self.office
        {
            return Err(NetError::BadCertificate {
                reason: "the device certificate does not match the enrollment details",
            });
        }
        let key = rcgen::KeyPair::from_pem(&self.key_pem).map_err(|_| NetError::BadPem {
            what: "device key",
            kind: "private key",
        })?;
        let (_, parsed) =
            x509_parser::parse_x509_certificate(&der).map_err(|_| NetError::BadCertificate {
                reason: "the certificate is not valid DER",
            })?;
        if parsed.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(NetError::KeyMismatch { what: "device" });
        }
        let ca = cert_der_from_pem(&self.office_ca_pem, "office CA certificate")?;
        x509_parser::parse_x509_certificate(&ca).map_err(|_| NetError::BadPem {
            what: "office CA certificate",
            kind: "certificate",
        })?;
        split_host_port(&self.relay_address)?;
        Ok(id)
    }

    /// The relay's host (for the TLS server name) and port.
    pub fn relay_host_port(&self) -> Result<(String, u16), NetError> {
        split_host_port(&self.relay_address)
    }
}

/// Splits `host:port` (IPv6: `[addr]:port`) into host and port; the host is checked to
/// be a DNS name or an IP address.
pub fn split_host_port(address: &str) -> Result<(String, u16), NetError> {
    let bad = || {
        NetError::invalid(
            "relay address",
            "must be HOST:PORT, e.g. relay.example.jp:4433 or [2001:db8::1]:4433",
        )
    };
    let (host, port) = if let Some(rest) = address.strip_prefix('[') {
        let (h, p) = rest.split_once("]:").ok_or_else(bad)?;
        h.parse::<std::net::Ipv6Addr>().map_err(|_| bad())?;
        (h, p)
    } else {
        let (h, p) = address.rsplit_once(':').ok_or_else(bad)?;
        if h.contains(':') {
            return Err(bad());
        }
        (h, p)
    };
    let port: u16 = port.parse().map_err(|_| bad())?;
    if port == 0 || rustls::pki_types::ServerName::try_from(host).is_err() {
        return Err(bad());
    }
    Ok((host.to_owned(), port))
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls(context: &'static str) -> impl FnOnce(rustls::Error) -> NetError {
    move |source| NetError::Tls { context, source }
}

fn office_roots(office_ca_pem: &str) -> Result<Arc<RootCertStore>, NetError> {
    let ca = cert_der_from_pem(office_ca_pem, "office CA certificate")?;
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(ca))
        .map_err(tls("adding the office CA"))?;
    Ok(Arc::new(roots))
}

/// The device's TLS configuration: TLS 1.3 only, ALPN `musubi/1`, trusts only the office
/// CA, presents the device certificate.
pub fn client_config(creds: &DeviceCredentials) -> Result<ClientConfig, NetError> {
    let roots = office_roots(&creds.office_ca_pem)?;
    let cert = cert_der_from_pem(&creds.cert_pem, "device certificate")?;
    let key = key_der_from_pem(&creds.key_pem, "device key")?;
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls("selecting TLS 1.3"))?
        .with_root_certificates(roots)
        .with_client_auth_cert(vec![CertificateDer::from(cert)], key)
        .map_err(tls("loading the device certificate"))?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok(config)
}

/// The device's TLS configuration for the enrollment exchange: TLS 1.3 only, ALPN
/// [`ALPN_ENROLL`], trusts only the office CA from the enrollment file, presents the
/// self-signed enrollment certificate of the key the device just made.
pub fn enroll_client_config(
    office_ca_pem: &str,
    request: &CertKey,
) -> Result<ClientConfig, NetError> {
    let roots = office_roots(office_ca_pem)?;
    let key = key_der_from_pem(&request.key_pem, "device key")?;
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls("selecting TLS 1.3"))?
        .with_root_certificates(roots)
        .with_client_auth_cert(vec![CertificateDer::from(request.cert_der.clone())], key)
        .map_err(tls("loading the enrollment certificate"))?;
    config.alpn_protocols = vec![ALPN_ENROLL.to_vec()];
    Ok(config)
}

/// The relay's TLS configuration: TLS 1.3 only, ALPN `musubi/1` or [`ALPN_ENROLL`],
/// presents the relay certificate, requires a device certificate of the office CA that
/// `revocation` does not refuse — or a self-signed enrollment certificate
/// ([`pki::enrollment_request`]), which the relay must then serve with the enrollment
/// exchange only (it carries no device identity, so [`pki::peer_identity`] refuses it).
pub fn server_config(
    relay: &CertKey,
    office_ca_pem: &str,
    revocation: Arc<dyn RevocationCheck>,
) -> Result<ServerConfig, NetError> {
    let roots = office_roots(office_ca_pem)?;
    let inner = WebPkiClientVerifier::builder_with_provider(roots, provider())
        .build()
        .map_err(NetError::Verifier)?;
    let verifier = Arc::new(OfficeClientVerifier { inner, revocation });
    let cert = cert_der_from_pem(&relay.cert_pem, "relay certificate")?;
    let key = key_der_from_pem(&relay.key_pem, "relay key")?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls("selecting TLS 1.3"))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![CertificateDer::from(cert)], key)
        .map_err(tls("loading the relay certificate"))?;
    config.alpn_protocols = vec![ALPN.to_vec(), ALPN_ENROLL.to_vec()];
    Ok(config)
}

/// webpki's chain, validity and clientAuth checks, then the musubi identity and the
/// revocation check.
struct OfficeClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    revocation: Arc<dyn RevocationCheck>,
}

impl fmt::Debug for OfficeClientVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OfficeClientVerifier")
    }
}

impl ClientCertVerifier for OfficeClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        // A tablet redeeming its enrollment has no certificate of the office yet: it shows
        // a self-signed one naming the device id it asks for. TLS still proves it holds
        // the key; the relay serves such a connection with the enrollment exchange only.
        if intermediates.is_empty() && pki::enrollment_request(end_entity.as_ref()).is_some() {
            return Ok(ClientCertVerified::assertion());
        }
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)
            .inspect_err(|e| tracing::info!(reason = %e, "refused a device certificate"))?;
        let identity = pki::peer_identity(end_entity.as_ref()).map_err(|_| {
            tracing::info!("refused a certificate without a valid musubi device identity");
            rustls::Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure)
        })?;
        if self.revocation.is_revoked(&identity) {
            tracing::info!(device = %identity.device_id, "refused a revoked device");
            return Err(rustls::Error::InvalidCertificate(CertificateError::Revoked));
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Why a device could not connect to the relay, for the person at the tablet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureReason {
    /// The office revoked this device.
    Revoked,
    /// The relay does not accept this device's certificate (another office CA, or no
    /// musubi identity).
    UnknownCertificate,
    /// The device certificate has expired (or the device clock is wrong).
    Expired,
    /// The relay's certificate is not from the office CA this device pins.
    RelayUntrusted,
    /// No answer from the relay.
    Unreachable,
    /// Anything else (see the underlying error).
    Other,
}

impl FailureReason {
    /// A sentence for the device user saying what happened and what to do.
    pub fn message(self) -> &'static str {
        match self {
            Self::Revoked => {
                "the office has revoked this device's certificate; contact the office (the device must be enrolled again)"
            }
            Self::UnknownCertificate => {
                "the relay does not recognise this device's certificate (it belongs to another office or relay); ask the office for a new enrollment"
            }
            Self::Expired => {
                "this device's certificate has expired or is not yet valid; check the device's date and time, or ask the office for a new enrollment"
            }
            Self::RelayUntrusted => {
                "the relay's certificate is not from this device's office; nothing was sent — check the relay address and contact the office"
            }
            Self::Unreachable => {
                "the relay cannot be reached; check the network connection and the relay address"
            }
            Self::Other => "the connection to the relay failed",
        }
    }
}

impl fmt::Display for FailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

/// The meaning of a TLS alert the relay sent about this device's certificate.
pub fn classify_alert_from_relay(alert: AlertDescription) -> FailureReason {
    match alert {
        AlertDescription::CertificateRevoked => FailureReason::Revoked,
        AlertDescription::CertificateExpired => FailureReason::Expired,
        AlertDescription::UnknownCA
        | AlertDescription::BadCertificate
        | AlertDescription::UnsupportedCertificate
        | AlertDescription::CertificateUnknown
        | AlertDescription::AccessDenied
        | AlertDescription::CertificateRequired
        | AlertDescription::DecryptError => FailureReason::UnknownCertificate,
        _ => FailureReason::Other,
    }
}

/// The meaning of a TLS alert this device raised against the relay.
fn classify_local_alert(alert: AlertDescription) -> FailureReason {
    match alert {
        AlertDescription::UnknownCA
        | AlertDescription::BadCertificate
        | AlertDescription::UnsupportedCertificate
        | AlertDescription::CertificateUnknown
        | AlertDescription::CertificateExpired
        | AlertDescription::CertificateRevoked
        | AlertDescription::DecryptError => FailureReason::RelayUntrusted,
        _ => FailureReason::Other,
    }
}

/// Classifies a rustls error seen on the device (e.g. from an in-memory or TCP
/// handshake): an alert received from the relay, or this device refusing the relay.
pub fn classify_tls_error(err: &rustls::Error) -> FailureReason {
    match err {
        rustls::Error::AlertReceived(alert) => classify_alert_from_relay(*alert),
        rustls::Error::InvalidCertificate(_) => FailureReason::RelayUntrusted,
        _ => FailureReason::Other,
    }
}

/// The TLS alert carried by a QUIC CRYPTO_ERROR code (0x100–0x1ff).
fn crypto_alert(code: quinn::TransportErrorCode) -> Option<AlertDescription> {
    let code = u64::from(code);
    if (0x100..=0x1ff).contains(&code) {
        u8::try_from(code - 0x100).ok().map(AlertDescription::from)
    } else {
        None
    }
}

/// Classifies a QUIC connection error seen on the device. A refusal by the relay arrives
/// as a CONNECTION_CLOSE carrying the TLS alert (possibly only after the client already
/// considered its handshake complete, so stream errors should be classified too); a
/// refusal of the relay by this device is a local transport error carrying the alert.
pub fn classify_connection_error(err: &quinn::ConnectionError) -> FailureReason {
    match err {
        quinn::ConnectionError::ConnectionClosed(close) => {
            crypto_alert(close.error_code).map_or(FailureReason::Other, classify_alert_from_relay)
        }
        quinn::ConnectionError::TransportError(te) => {
            crypto_alert(te.code).map_or(FailureReason::Other, classify_local_alert)
        }
        quinn::ConnectionError::TimedOut => FailureReason::Unreachable,
        _ => FailureReason::Other,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::HashSet;
    use std::sync::Mutex;
    use std::time::{Duration, SystemTime};

    use rustls::{ClientConnection, ServerConnection};

    use super::*;
    use crate::net::pki::{
        DEVICE_VALIDITY, DeviceSubject, OfficeCa, issue_device_cert, issue_device_cert_now,
        issue_relay_cert,
    };

    const OFFICE: &str = "1370100016";

    /// Revokes device ids put in the set, at any time.
    #[derive(Default)]
    struct RevokedIds(Mutex<HashSet<String>>);

    impl RevocationCheck for RevokedIds {
        fn is_revoked(&self, peer: &PeerIdentity) -> bool {
            self.0.lock().unwrap().contains(&peer.device_id)
        }
    }

    struct Office {
        ca: OfficeCa,
        relay: CertKey,
    }

    impl Office {
        fn new() -> Office {
            Office::named("relay-test")
        }

        fn named(name: &str) -> Office {
            let ca = OfficeCa::generate(name).unwrap();
            let relay = issue_relay_cert(&ca, &[]).unwrap();
            Office { ca, relay }
        }

        fn creds_with(&self, subject: &DeviceSubject, cert: CertKey) -> DeviceCredentials {
            DeviceCredentials {
                device_id: subject.device_id.clone(),
                device_name: subject.device_name.clone(),
                office: subject.office.clone(),
                cert_pem: cert.cert_pem,
                key_pem: cert.key_pem,
                office_ca_pem: self.ca.cert_pem().to_owned(),
                relay_address: "localhost:4433".into(),
            }
        }

        fn device(&self, name: &str) -> DeviceCredentials {
            let subject = DeviceSubject::new_random(name, OFFICE).unwrap();
            let cert = issue_device_cert_now(&self.ca, &subject).unwrap();
            self.creds_with(&subject, cert)
        }

        fn server(&self, revocation: Arc<dyn RevocationCheck>) -> ServerConfig {
            server_config(&self.relay, self.ca.cert_pem(), revocation).unwrap()
        }
    }

    #[derive(Debug)]
    struct Outcome {
        client: Option<rustls::Error>,
        server: Option<rustls::Error>,
        peer: Option<PeerIdentity>,
        alpn: Option<Vec<u8>>,
    }

    /// Moves every pending TLS record from one side to the other.
    macro_rules! pump {
        ($from:expr, $to:expr) => {{
            let mut buf = Vec::new();
            while $from.wants_write() {
                $from.write_tls(&mut buf).unwrap();
            }
            let mut rd = &buf[..];
            while !rd.is_empty() {
                $to.read_tls(&mut rd).unwrap();
            }
        }};
    }

    /// A real rustls handshake between the two configurations, in memory.
    fn handshake(client: ClientConfig, server: ServerConfig, host: &str) -> Outcome {
        let name = rustls::pki_types::ServerName::try_from(host.to_owned()).unwrap();
        let mut c = ClientConnection::new(Arc::new(client), name).unwrap();
        let mut s = ServerConnection::new(Arc::new(server)).unwrap();
        let mut out = Outcome {
            client: None,
            server: None,
            peer: None,
            alpn: None,
        };
        for _ in 0..20 {
            pump!(c, s);
            if let Err(e) = s.process_new_packets() {
                out.server = Some(e);
                pump!(s, c);
                out.client = c.process_new_packets().err();
                return out;
            }
            pump!(s, c);
            if let Err(e) = c.process_new_packets() {
                out.client = Some(e);
                pump!(c, s);
                out.server = s.process_new_packets().err();
                return out;
            }
            if !c.is_handshaking() && !s.is_handshaking() && !c.wants_write() && !s.wants_write() {
                break;
            }
        }
        out.peer = s
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(|der| pki::peer_identity(der.as_ref()).ok());
        out.alpn = s.alpn_protocol().map(<[u8]>::to_vec);
        assert_eq!(c.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_3));
        out
    }

    #[test]
    fn enrolled_device_connects_and_is_identified() {
        let office = Office::new();
        let creds = office.device("tablet-1");
        let id = creds.validate().unwrap();
        let out = handshake(
            client_config(&creds).unwrap(),
            office.server(Arc::new(NothingRevoked)),
            "localhost",
        );
        assert!(out.client.is_none() && out.server.is_none(), "{out:?}");
        let peer = out.peer.unwrap();
        assert_eq!(peer, id);
        assert_eq!(peer.device_id, creds.device_id);
        assert_eq!(out.alpn.as_deref(), Some(ALPN));
        // The relay is also reachable by its fixed name and its IP address SAN.
        for name in [RELAY_SERVER_NAME, "127.0.0.1"] {
            let out = handshake(
                client_config(&creds).unwrap(),
                office.server(Arc::new(NothingRevoked)),
                name,
            );
            assert!(out.client.is_none() && out.server.is_none(), "{out:?}");
        }
    }

    #[test]
    fn an_enrollment_request_passes_the_handshake_without_an_identity() {
        let office = Office::new();
        let key = pki::DeviceKey::generate().unwrap();
        let request = key.enrollment_cert(&pki::new_device_id()).unwrap();
        let client = enroll_client_config(office.ca.cert_pem(), &request).unwrap();
        let out = handshake(client, office.server(Arc::new(NothingRevoked)), "localhost");
        assert!(out.client.is_none() && out.server.is_none(), "{out:?}");
        // It proves the key, and names no device: the relay serves it the enrollment
        // exchange only.
        assert_eq!(out.alpn.as_deref(), Some(ALPN_ENROLL));
        assert!(out.peer.is_none());

        // A self-signed certificate that is not an enrollment request (here: one that
        // claims a device identity) still needs the office CA.
        let stranger = Office::new().device("stranger");
        let mut creds = stranger.clone();
        creds.office_ca_pem = office.ca.cert_pem().to_owned();
        let out = handshake(
            client_config(&creds).unwrap(),
            office.server(Arc::new(NothingRevoked)),
            "localhost",
        );
        assert!(out.server.is_some(), "{out:?}");
    }

    #[test]
    fn revocation_applies_at_the_next_handshake() {
        let office = Office::new();
        let creds = office.device("tablet-1");
        let other = office.device("tablet-2");
        let revoked = Arc::new(RevokedIds::default());
        let server = office.server(revoked.clone());
        let ok = handshake(client_config(&creds).unwrap(), server.clone(), "localhost");
        assert!(ok.server.is_none(), "{ok:?}");

        revoked.0.lock().unwrap().insert(creds.device_id.clone());
        let out = handshake(client_config(&creds).unwrap(), server.clone(), "localhost");
        assert_eq!(
            out.server,
            Some(rustls::Error::InvalidCertificate(CertificateError::Revoked))
        );
        let client_err = out.client.unwrap();
        assert_eq!(
            client_err,
            rustls::Error::AlertReceived(AlertDescription::CertificateRevoked)
        );
        assert_eq!(classify_tls_error(&client_err), FailureReason::Revoked);
        assert!(
            classify_tls_error(&client_err)
                .message()
                .contains("revoked")
        );
        // Other devices are not affected.
        let out = handshake(client_config(&other).unwrap(), server, "localhost");
        assert!(out.server.is_none(), "{out:?}");
    }

    #[test]
    fn expired_certificate_is_refused() {
        let office = Office::new();
        let subject = DeviceSubject::new_random("old-tablet", OFFICE).unwrap();
        let now = SystemTime::now();
        let cert = issue_device_cert(
            &office.ca,
            &subject,
            now - DEVICE_VALIDITY,
            now - Duration::from_secs(3600),
        )
        .unwrap();
        let creds = office.creds_with(&subject, cert);
        creds.validate().unwrap();
        let out = handshake(
            client_config(&creds).unwrap(),
            office.server(Arc::new(NothingRevoked)),
            "localhost",
        );
        assert!(
            matches!(
                out.server,
                Some(rustls::Error::InvalidCertificate(
                    CertificateError::Expired | CertificateError::ExpiredContext { .. }
                ))
            ),
            "{out:?}"
        );
        assert_eq!(
            classify_tls_error(&out.client.unwrap()),
            FailureReason::Expired
        );
        // Not yet valid counts the same.
        let later = issue_device_cert(
            &office.ca,
            &subject,
            now + Duration::from_secs(86400),
            now + DEVICE_VALIDITY,
        )
        .unwrap();
        let creds = office.creds_with(&subject, later);
        let out = handshake(
            client_config(&creds).unwrap(),
            office.server(Arc::new(NothingRevoked)),
            "localhost",
        );
        assert_eq!(
            classify_tls_error(&out.client.unwrap()),
            FailureReason::Expired
        );
    }

    #[test]
    fn device_of_another_ca_is_refused() {
        let office = Office::new();
        // Same CA name (a forged look-alike) and a distinct one.
        for stranger in [
            Office::new().device("stranger"),
            Office::named("relay-elsewhere").device("stranger"),
        ] {
            // The stranger pins its own CA; give it ours to get as far as the relay's check.
            let mut creds = stranger.clone();
            creds.office_ca_pem = office.ca.cert_pem().to_owned();
            let out = handshake(
                client_config(&creds).unwrap(),
                office.server(Arc::new(NothingRevoked)),
                "localhost",
            );
            // With the same CA name webpki finds a candidate issuer and the signature
            // check fails; with a distinct name the issuer is unknown.
            assert!(
                matches!(
                    out.server,
                    Some(rustls::Error::InvalidCertificate(
                        CertificateError::UnknownIssuer | CertificateError::BadSignature
                    ))
                ),
                "{out:?}"
            );
            assert_eq!(
                classify_tls_error(&out.client.unwrap()),
                FailureReason::UnknownCertificate
            );
        }
    }

    #[test]
    fn relay_of_another_ca_is_not_trusted_by_the_device() {
        let office = Office::new();
        let impostor = Office::new();
        let creds = office.device("tablet-1");
        let out = handshake(
            client_config(&creds).unwrap(),
            impostor.server(Arc::new(NothingRevoked)),
            "localhost",
        );
        let err = out.client.unwrap();
        assert!(
            matches!(
                err,
                rustls::Error::InvalidCertificate(
                    CertificateError::UnknownIssuer | CertificateError::BadSignature
                )
            ),
            "{err:?}"
        );
        assert_eq!(classify_tls_error(&err), FailureReason::RelayUntrusted);
        // A name the relay certificate does not carry is refused too.
        let out = handshake(
            client_config(&creds).unwrap(),
            office.server(Arc::new(NothingRevoked)),
            "relay.example.jp",
        );
        assert_eq!(
            classify_tls_error(&out.client.unwrap()),
            FailureReason::RelayUntrusted
        );
    }

    #[test]
    fn a_ca_issued_certificate_without_identity_is_refused() {
        // The relay's own server certificate chains to the CA but has no device identity
        // (and no clientAuth): refused.
        let office = Office::new();
        let mut creds = office.device("tablet-1");
        creds.cert_pem = office.relay.cert_pem.clone();
        creds.key_pem = office.relay.key_pem.clone();
        assert!(creds.validate().is_err());
        let out = handshake(
            client_config(&creds).unwrap(),
            office.server(Arc::new(NothingRevoked)),
            "localhost",
        );
        assert!(out.server.is_some(), "{out:?}");
        assert_eq!(
            classify_tls_error(&out.client.unwrap()),
            FailureReason::UnknownCertificate
        );
    }

    #[test]
    fn credentials_validation_and_addresses() {
        let office = Office::new();
        let creds = office.device("tablet-1");
        let mut wrong = creds.clone();
        wrong.office = "1370100024".into();
        assert!(wrong.validate().is_err());
        let mut wrong_key = creds.clone();
        wrong_key.key_pem = office.device("x").key_pem;
        assert!(matches!(
            wrong_key.validate(),
            Err(NetError::KeyMismatch { .. })
        ));
        assert!(client_config(&wrong_key).is_err());
        let mut bad_pem = creds.clone();
        bad_pem.office_ca_pem = "garbage".into();
        assert!(client_config(&bad_pem).is_err());
        let dbg = format!("{creds:?}");
        assert!(
            !dbg.contains("PRIVATE") && !dbg.contains("tablet-1"),
            "{dbg}"
        );

        assert_eq!(
            split_host_port("relay.example.jp:4433").unwrap(),
            ("relay.example.jp".to_owned(), 4433)
        );
        assert_eq!(
            split_host_port("127.0.0.1:1").unwrap(),
            ("127.0.0.1".to_owned(), 1)
        );
        assert_eq!(
            split_host_port("[::1]:4433").unwrap(),
            ("::1".to_owned(), 4433)
        );
        for bad in [
            "",
            "host",
            "host:",
            "host:0",
            "host:99999",
            "::1:4433",
            "[x]:1",
            "a b:1",
        ] {
            assert!(split_host_port(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn quic_close_codes_are_classified() {
        // A CONNECTION_CLOSE as the relay sends it when TLS refuses the device.
        let closed = |alert: AlertDescription| {
            quinn::ConnectionError::ConnectionClosed(quinn::ConnectionClose {
                error_code: quinn::TransportErrorCode::crypto(u8::from(alert)),
                frame_type: None,
                reason: Default::default(),
            })
        };
        assert_eq!(
            classify_connection_error(&closed(AlertDescription::CertificateRevoked)),
            FailureReason::Revoked
        );
        assert_eq!(
            classify_connection_error(&closed(AlertDescription::CertificateExpired)),
            FailureReason::Expired
        );
        assert_eq!(
            classify_connection_error(&closed(AlertDescription::UnknownCA)),
            FailureReason::UnknownCertificate
        );
        assert_eq!(
            classify_connection_error(&quinn::ConnectionError::TimedOut),
            FailureReason::Unreachable
        );
        assert_eq!(
            classify_connection_error(&quinn::ConnectionError::Reset),
            FailureReason::Other
        );
    }
}

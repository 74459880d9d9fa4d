//! Networking for sync: the office PKI, TLS configurations, enrollment files, and (with
//! the QUIC driver) the transport.
//!
//! - [`pki`]: the office certificate authority (rcgen, ECDSA P-256), relay and device
//!   certificates, and reading a device's identity back from its certificate;
//! - [`tls`]: rustls 0.23 configurations, TLS 1.3 only, ALPN `musubi/1`, mutual TLS with
//!   the office CA pinned and revocation checked during the handshake;
//! - [`enroll`]: enrollment files (no key: device id, office CA, relay address and an
//!   enrollment secret, sealed with age/scrypt to a one-time code) and keeping the
//!   credentials inside the device's encrypted store;
//! - [`certx`]: redeeming an enrollment with a key pair made on the device, and renewing
//!   the certificate over the sync connection;
//! - [`error`]: [`NetError`], the error type of this module.

pub mod certx;
pub mod enroll;
pub mod error;
pub mod pki;
pub mod tls;

pub use self::error::NetError;
/// Re-exported so the relay and the app can name TLS types without their own dependency.
pub use rustls;
/// Re-exported so callers can hold key material without depending on `zeroize`.
pub use zeroize::Zeroizing;

// The QUIC transport (framing, session driver, device sync) and the app's background sync.
pub mod quic;
pub mod sync_loop;

//! [`NetError`]: what can go wrong in the office PKI, the TLS setup and enrollment.
//!
//! Messages are plain English for an office administrator or a person at a tablet. They
//! name the field, file part or frame that was wrong, never a key, a code, a device name
//! or any other value taken from the input.

use std::io;

use crate::store::StoreError;

/// Errors of [`crate::net`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// A certificate or key could not be generated or signed.
    #[error("could not create the {what}")]
    Generate {
        /// What was being created (a fixed phrase).
        what: &'static str,
        /// The underlying error.
        #[source]
        source: rcgen::Error,
    },

    /// A PEM text (certificate or key) is missing, damaged or of the wrong kind.
    #[error("the {what} is not a valid PEM {kind}")]
    BadPem {
        /// Which input (a fixed phrase, e.g. "office CA certificate").
        what: &'static str,
        /// "certificate" or "private key".
        kind: &'static str,
    },

    /// A certificate could not be parsed, or lacks the musubi identity it must carry.
    #[error("certificate refused: {reason}")]
    BadCertificate {
        /// Why (a fixed phrase).
        reason: &'static str,
    },

    /// A private key does not belong to the certificate it was given with.
    #[error("the {what} private key does not match its certificate")]
    KeyMismatch {
        /// Which pair (a fixed phrase).
        what: &'static str,
    },

    /// A caller-supplied value is invalid; `field` names it, `problem` says why.
    #[error("invalid {field}: {problem}")]
    Invalid {
        /// The field or option (never its value).
        field: &'static str,
        /// What is wrong with it (a fixed phrase or a rule, never the value).
        problem: String,
    },

    /// rustls refused a configuration.
    #[error("TLS configuration failed while {context}")]
    Tls {
        /// What was being configured.
        context: &'static str,
        /// The underlying error.
        #[source]
        source: rustls::Error,
    },

    /// The client certificate verifier could not be built.
    #[error("TLS configuration failed while building the device certificate check")]
    Verifier(#[source] rustls::server::VerifierBuilderError),

    /// The enrollment code is not of the expected shape (before any decryption).
    #[error("the enrollment code must be 20 letters and digits, shown as XXXXX-XXXXX-XXXXX-XXXXX")]
    MalformedCode,

    /// The enrollment code does not open this enrollment file.
    #[error(
        "the enrollment code does not match this enrollment file; check the code (it is printed once, when the file is made) or ask the office for a new enrollment"
    )]
    WrongCode,

    /// The enrollment file is truncated, altered or not an enrollment file at all.
    #[error(
        "the enrollment file is damaged or incomplete ({reason}); ask the office for a new one"
    )]
    DamagedEnrollment {
        /// Which part failed (a fixed phrase).
        reason: &'static str,
    },

    /// The enrollment file was written by a newer musubi.
    #[error(
        "the enrollment file has format {found}, newer than this program supports ({supported}); update musubi"
    )]
    NewerEnrollment {
        /// The file's format number.
        found: u32,
        /// The newest this build reads.
        supported: u32,
    },

    /// The enrollment file is of the earlier kind that carried the device's private key.
    #[error(
        "this enrollment file is of an earlier kind (it carried a private key) and is no longer accepted; ask the office for a new one"
    )]
    OutdatedEnrollment,

    /// The credentials kept in the encrypted store cannot be read back.
    #[error("the device credentials in the store are damaged ({reason}); enroll the device again")]
    DamagedCredentials {
        /// What failed (a fixed phrase).
        reason: &'static str,
    },

    /// The encrypted store failed.
    #[error(transparent)]
    Store(#[from] StoreError),

    /// File system error.
    #[error("I/O error while {context}")]
    Io {
        /// What was being done.
        context: &'static str,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl NetError {
    /// `map_err` helper for file system calls.
    pub fn io(context: &'static str) -> impl FnOnce(io::Error) -> Self {
        move |source| Self::Io { context, source }
    }

    /// Shorthand for [`NetError::Invalid`].
    pub(crate) fn invalid(field: &'static str, problem: impl Into<String>) -> Self {
        Self::Invalid {
            field,
            problem: problem.into(),
        }
    }

    /// True when the error means "bad enrollment file or code": the caller's input was
    /// wrong and nothing was written.
    pub fn is_bad_enrollment(&self) -> bool {
        matches!(
            self,
            Self::MalformedCode
                | Self::WrongCode
                | Self::DamagedEnrollment { .. }
                | Self::NewerEnrollment { .. }
                | Self::OutdatedEnrollment
        )
    }
}

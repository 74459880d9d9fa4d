//! musubi engine: the I/O around [`musubi_core`], and the facade the CLI and the app call.
//!
//! - [`store`]: the encrypted local store (SQLCipher, key wrapped with age), owned by one
//!   thread; it implements the storage contract [`sync::SyncStorage`];
//! - [`net`]: the QUIC driver of the sync protocol, the office PKI and enrollment;
//! - [`engine`]: the facade the CLI and the app call;
//! - [`card`]: the card protocol of the core plus the PC/SC driver (feature `pcsc`) and the
//!   writing of 本人確認 and registrations through the store;
//! - `sync::bundle::{read_file, write_file, encrypt_to, decrypt}`: bundle files, encrypted
//!   with age;
//! - [`fsutil`]: the one durable file write every writer uses.
//!
//! Every module of `musubi-core` (ids, date, identifiers, schema, doc, care, export, admit, sync,
//! card) is re-exported here under its own name, so callers keep one path.

pub use musubi_core::{admit, care, date, doc, export, identifiers, ids, schema};

/// The sync protocol ([`musubi_core::sync`]); bundles gain their encrypted files here.
pub mod sync {
    pub use musubi_core::sync::*;

    /// The bundle format ([`musubi_core::sync::bundle`]) and, with the store, its
    /// encrypted files.
    pub mod bundle {
        #[cfg(feature = "store")]
        pub use crate::bundle_file::{decrypt, encrypt_to, read_file, write_file};
        pub use musubi_core::sync::bundle::*;
    }
}

/// The My Number card ([`musubi_core::card`]), its PC/SC driver and registration writing.
#[cfg(feature = "card")]
pub mod card {
    pub use musubi_core::card::*;

    #[cfg(feature = "pcsc")]
    pub mod pcsc;
    // Writes 本人確認 and registration documents through the engine, so it needs the store.
    #[cfg(feature = "store")]
    pub mod register;
}

#[cfg(feature = "store")]
mod bundle_file;
#[cfg(feature = "store")]
pub mod engine;
pub mod fsutil;
#[cfg(feature = "net")]
pub mod net;
#[cfg(feature = "store")]
pub mod store;

/// Reading a secret's value is explicit: `secret.expose_secret()`.
#[cfg(feature = "store")]
pub use age::secrecy::ExposeSecret;
#[cfg(feature = "store")]
pub use engine::{Engine, EngineError};

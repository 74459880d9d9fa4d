//! The relay directory and the administration operations on it.
//!
//! ```text
//! D/                       0700
//!   relay.toml             relay id, offices, default listen address, hosts (no secrets)
//!   devices.toml           device registry: name, id, office, fingerprint, dates; and
//!                          enrollments (pending/redeemed, SHA-256 of their secret)
//!   ca/office-ca.pem       office CA certificate (what devices pin)
//!   ca/office-ca.key       office CA private key (0600) — signs enrollments
//!   tls/relay.pem          relay server certificate
//!   tls/relay.key          relay server private key (0600)
//!   store.key              random passphrase of the relay store (0600); optional when
//!                          the systemd credential `musubi-relay-store-key` is used
//!   store/                 the relay's encrypted store (same format as a device's)
//!   data.key               a cluster relay only (`init --database`), instead of
//!                          store.key and store/: the keys that seal its data in
//!                          PostgreSQL (0600); every node of the cluster has a copy
//!   .admin.lock            held while enroll / revoke / office add change files
//! ```
//!
//! `relay.toml` is written last by `init`: a directory without it is not a relay directory.
//! `init` builds everything in a temporary sibling directory and renames it into place, so
//! an interrupted `init` leaves nothing half-made at `D`.

use std::collections::BTreeMap;
use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use musubi_engine::ExposeSecret;
use musubi_engine::net::Zeroizing;
use musubi_engine::net::enroll::{self, EnrollmentCode, EnrollmentTicket};
use musubi_engine::net::pki::{self, CertKey, DeviceSubject, OfficeCa};
use musubi_engine::net::rustls;
use musubi_engine::net::tls::{self, RevocationCheck};
use musubi_engine::store::{self, SecretString, Store};
use musubi_engine::sync::SyncStorage;
use musubi_relay_pg::{DataKeys, PgOptions, PgStorage};
use serde::Serialize;

use crate::config::{DEFAULT_LISTEN, FORMAT, RelayConfig};
use crate::devices::{DeviceRecord, DeviceRegistry, EnrollmentState, PendingEnrollment};
use crate::error::RelayError;
use crate::fsutil;
use crate::registry::{PgRevocation, RegistryBackend, Revocation};
use crate::revocation::FileRevocation;

/// `relay.toml`.
pub const RELAY_TOML: &str = "relay.toml";
/// `devices.toml`.
pub const DEVICES_TOML: &str = "devices.toml";
/// The office CA certificate.
pub const CA_CERT: &str = "ca/office-ca.pem";
/// The office CA private key.
pub const CA_KEY: &str = "ca/office-ca.key";
/// The relay's server certificate.
pub const RELAY_CERT: &str = "tls/relay.pem";
/// The relay's server key.
pub const RELAY_KEY: &str = "tls/relay.key";
/// The relay store's passphrase file.
pub const STORE_KEY: &str = "store.key";
/// The relay store directory.
pub const STORE_DIR: &str = "store";
/// The data keys of a cluster relay's PostgreSQL store.
pub const DATA_KEY: &str = "data.key";
/// Lock file for administrative changes.
pub const ADMIN_LOCK: &str = ".admin.lock";
/// Name of the systemd credential holding the store passphrase
/// (`LoadCredential=musubi-relay-store-key:…`), looked up in `$CREDENTIALS_DIRECTORY`.
pub const STORE_KEY_CREDENTIAL: &str = "musubi-relay-store-key";
/// scrypt work factor of the relay store's key file: the passphrase is 256 random bits,
/// so a slow key derivation would only delay every start of the server.
pub const STORE_KDF_WORK_FACTOR: u8 = 12;
/// Device name of the relay's own store.
pub const STORE_DEVICE_NAME: &str = "relay";

/// Settings for [`RelayDir::init`].
#[derive(Clone, Debug, Default)]
pub struct InitOptions {
    /// The relay directory to create (must not exist, or be empty).
    pub dir: PathBuf,
    /// The first office served (事業所番号).
    pub office: String,
    /// Host names / IP addresses for the relay certificate (default: localhost,
    /// 127.0.0.1). The first one is the default address given to devices.
    pub hosts: Vec<String>,
    /// Default listen address (default [`DEFAULT_LISTEN`]).
    pub listen: Option<SocketAddr>,
    /// scrypt work factor of the relay store's key file (default
    /// [`STORE_KDF_WORK_FACTOR`]; tests use a smaller one).
    pub store_kdf_work_factor: Option<u8>,
    /// A PostgreSQL database instead of the embedded store (a cluster relay): `init`
    /// creates the schema there and the data keys in the directory.
    pub database: Option<String>,
}

/// The store a relay serves from: the embedded SQLCipher store, or PostgreSQL.
pub enum RelayStore {
    /// `store/`, one process.
    Embedded(Arc<Store>),
    /// A database shared by every node of a cluster.
    Postgres(Arc<PgStorage>),
}

impl RelayStore {
    /// The store as the sync core sees it.
    pub fn sync(&self) -> Arc<dyn SyncStorage + Send + Sync> {
        match self {
            RelayStore::Embedded(s) => Arc::clone(s) as _,
            RelayStore::Postgres(s) => Arc::clone(s) as _,
        }
    }

    /// Closes the store once every other holder let go of it.
    pub fn close(self) -> Result<(), RelayError> {
        match self {
            RelayStore::Embedded(s) => match Arc::into_inner(s) {
                Some(store) => Ok(store.close()?),
                None => Err(RelayError::BadFile {
                    file: "store",
                    problem: "still in use when closing".into(),
                }),
            },
            RelayStore::Postgres(_) => Ok(()),
        }
    }
}

/// What [`RelayDir::enroll`] needs.
#[derive(Clone, Debug)]
pub struct EnrollRequest {
    /// Device name (shown to the office; goes into the certificate).
    pub device_name: String,
    /// Office; `None` picks the only office.
    pub office: Option<String>,
    /// Relay address for the device (`host:port`); `None`: the first host and the
    /// configured listen port.
    pub address: Option<String>,
    /// Where to write the enrollment file (must not exist).
    pub out: PathBuf,
    /// Re-enroll the active device of this name (e.g. its certificate expired): same
    /// device id and office, a new key and certificate once redeemed.
    pub reenroll: bool,
}

/// How long an enrollment may wait for its tablet.
pub const ENROLLMENT_VALIDITY: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// The result of an enrollment.
#[derive(Debug)]
pub struct Enrollment {
    /// The new pending enrollment.
    pub record: PendingEnrollment,
    /// The relay address written into the file.
    pub relay_address: String,
    /// The one-time code that opens the file.
    pub code: EnrollmentCode,
}

/// Per-office numbers for `status`.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct OfficeStatus {
    /// The office number.
    pub office: String,
    /// Documents of this office in the relay store.
    pub documents: usize,
    /// Devices enrolled and not revoked.
    pub active_devices: usize,
    /// Devices revoked.
    pub revoked_devices: usize,
}

/// One device line of `status`.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct DeviceStatus {
    /// Device name (an office-chosen label).
    pub name: String,
    /// Device id.
    pub id: String,
    /// Office.
    pub office: String,
    /// `active` or `revoked`.
    pub state: &'static str,
    /// Enrollment time.
    pub enrolled_at: String,
    /// Certificate end of validity.
    pub not_after: String,
    /// Revocation time.
    pub revoked_at: Option<String>,
    /// Times a copy of this device's enrollment file and code was tried again.
    pub enrollment_reused: u32,
}

/// One enrollment line of `status`.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct EnrollmentStatus {
    /// Device name.
    pub name: String,
    /// Device id.
    pub id: String,
    /// Office.
    pub office: String,
    /// `pending`, `redeemed`, `expired`, `locked` or `cancelled`.
    pub state: &'static str,
    /// A re-enrollment of an existing device.
    pub reenroll: bool,
    /// When it was made.
    pub created_at: String,
    /// When it stops being redeemable.
    pub expires_at: String,
    /// Wrong secrets presented.
    pub failures: u32,
    /// Attempts to use it again after it was redeemed (a copied file and code).
    pub reuse_attempts: u32,
}

/// What `musubi-relay status` shows. No document content, no staff or client names.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Status {
    /// Relay id.
    pub relay_id: String,
    /// Default listen address.
    pub listen: String,
    /// Host names in the relay certificate.
    pub hosts: Vec<String>,
    /// Offices with counts.
    pub offices: Vec<OfficeStatus>,
    /// Documents in the store whose office is not (any more) served.
    pub other_documents: usize,
    /// Devices.
    pub devices: Vec<DeviceStatus>,
    /// Enrollments, pending and past.
    pub enrollments: Vec<EnrollmentStatus>,
}

/// An opened relay directory.
#[derive(Clone, Debug)]
pub struct RelayDir {
    path: PathBuf,
    config: RelayConfig,
    /// Where the device registry lives, found at first use.
    registry: std::sync::OnceLock<RegistryBackend>,
}

fn random_secret_hex() -> Zeroizing<String> {
    // Two independent 128-bit random ids: 256 bits.
    Zeroizing::new(format!("{}{}", pki::new_device_id(), pki::new_device_id()))
}

fn is_empty_dir(path: &Path) -> Result<bool, RelayError> {
    match std::fs::read_dir(path) {
        Ok(mut entries) => Ok(entries.next().is_none()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => Ok(false),
        Err(e) => Err(RelayError::io("looking at the relay directory", path)(e)),
    }
}

pub(crate) fn format_unix(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| secs.to_string())
}

/// `host:port` for a device, bracketing IPv6 literals.
fn address_for(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

impl RelayDir {
    /// Creates a relay directory: office CA, relay certificate, `relay.toml`, an empty
    /// device registry, the store passphrase and the relay's encrypted store.
    pub fn init(opts: InitOptions) -> Result<RelayDir, RelayError> {
        pki::check_office(&opts.office)
            .map_err(|e| RelayError::invalid("--office", e.to_string()))?;
        let mut hosts: Vec<String> = Vec::new();
        let given = opts.hosts.iter().map(String::as_str);
        let defaults = pki::DEFAULT_HOSTS.iter().copied();
        for h in given.chain(defaults) {
            if !hosts.iter().any(|x| x == h) {
                hosts.push(h.to_owned());
            }
        }
        let listen = match opts.listen {
            Some(l) => l,
            None => DEFAULT_LISTEN
                .parse()
                .map_err(|_| RelayError::invalid("--listen", "bad built-in default"))?,
        };
        let dir = &opts.dir;
        if !is_empty_dir(dir)? {
            return Err(RelayError::AlreadyExists { dir: dir.clone() });
        }
        let parent = match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        fsutil::create_private_dir(&parent)?;
        let name = dir
            .file_name()
            .ok_or_else(|| RelayError::invalid("--dir", "must name a directory"))?;
        let mut staging_name = std::ffi::OsString::from(".");
        staging_name.push(name);
        staging_name.push(format!(".init-{}", &pki::new_device_id()[..8]));
        let staging = parent.join(staging_name);

        let config = RelayConfig {
            format: FORMAT,
            relay_id: pki::new_device_id(),
            offices: vec![opts.office.clone()],
            listen,
            hosts,
            created_at: fsutil::now_rfc3339(),
            database: opts.database.clone(),
            limits: crate::config::LimitsConfig::default(),
        };
        let built = Self::build(&staging, &config, &opts);
        if let Err(e) = built {
            // Only files this call created are removed; nothing at `dir` was touched.
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e);
        }
        // Replaces `dir` only if it is missing or an empty directory.
        if let Err(e) = std::fs::rename(&staging, dir) {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(RelayError::io(
                "moving the new relay directory into place",
                dir,
            )(e));
        }
        fsutil::fsync_dir(&parent).map_err(RelayError::io("creating the relay directory", dir))?;
        tracing::info!(relay = %config.relay_id, "relay directory created");
        Ok(RelayDir {
            path: dir.clone(),
            config,
            registry: std::sync::OnceLock::new(),
        })
    }

    fn build(staging: &Path, config: &RelayConfig, opts: &InitOptions) -> Result<(), RelayError> {
        fsutil::create_private_dir(staging)?;
        fsutil::create_private_dir(&staging.join("ca"))?;
        fsutil::create_private_dir(&staging.join("tls"))?;
        fsutil::write_new_private(
            &staging.join(crate::config::SERVE_TOML),
            crate::config::serve_toml_template().as_bytes(),
        )?;
        let ca = OfficeCa::generate(&config.relay_id)?;
        let (ca_pem, ca_key) = ca.to_pem();
        fsutil::write_new_private(&staging.join(CA_CERT), ca_pem.as_bytes())?;
        fsutil::write_new_private(&staging.join(CA_KEY), ca_key.as_bytes())?;
        let relay = pki::issue_relay_cert(&ca, &config.hosts)?;
        fsutil::write_new_private(&staging.join(RELAY_CERT), relay.cert_pem.as_bytes())?;
        fsutil::write_new_private(&staging.join(RELAY_KEY), relay.key_pem.as_bytes())?;
        if let Some(url) = &config.database {
            // The device registry is in the database too (see `registry`).
            // A cluster relay: the data keys here, the schema in the database (a second
            // node is this directory copied; it finds the schema in place).
            let hex = DataKeys::generate_hex()?;
            let mut line = Zeroizing::new(hex.as_str().to_owned());
            line.push('\n');
            fsutil::write_new_private(&staging.join(DATA_KEY), line.as_bytes())?;
            PgStorage::open(&PgOptions::new(url), DataKeys::from_hex(&hex)?)?;
            return config.write(&staging.join(RELAY_TOML));
        }
        DeviceRegistry::new().write(&staging.join(DEVICES_TOML))?;

        let secret = random_secret_hex();
        let mut line = Zeroizing::new(secret.as_str().to_owned());
        line.push('\n');
        fsutil::write_new_private(&staging.join(STORE_KEY), line.as_bytes())?;
        let passphrase = SecretString::from(secret.as_str().to_owned());
        let store = Store::init(
            &staging.join(STORE_DIR),
            &passphrase,
            store::InitOptions {
                office: opts.office.clone(),
                device_name: STORE_DEVICE_NAME.to_owned(),
                kdf_work_factor: Some(opts.store_kdf_work_factor.unwrap_or(STORE_KDF_WORK_FACTOR)),
                ..store::InitOptions::default()
            },
        )?;
        store.close()?;
        // Last: marks the directory complete.
        config.write(&staging.join(RELAY_TOML))
    }

    /// Opens an existing relay directory (reads and checks `relay.toml`).
    pub fn open(path: &Path) -> Result<RelayDir, RelayError> {
        let toml_path = path.join(RELAY_TOML);
        match toml_path.try_exists() {
            Ok(true) => {}
            Ok(false) => {
                return Err(RelayError::NotARelayDir {
                    dir: path.to_path_buf(),
                });
            }
            Err(e) => return Err(RelayError::io("opening the relay directory", path)(e)),
        }
        let config = RelayConfig::read(&toml_path)?;
        Ok(RelayDir {
            path: path.to_path_buf(),
            config,
            registry: std::sync::OnceLock::new(),
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `relay.toml` as read when opened (or as last changed through this value).
    pub fn config(&self) -> &RelayConfig {
        &self.config
    }

    /// The relay id.
    pub fn relay_id(&self) -> &str {
        &self.config.relay_id
    }

    /// The offices served.
    pub fn offices(&self) -> &[String] {
        &self.config.offices
    }

    /// The offices served now: `relay.toml` re-read, and, for a cluster relay, the
    /// offices added through any node (kept in the database's registry; a single relay's
    /// registry lists none).
    pub fn offices_served(&self) -> Result<Vec<String>, RelayError> {
        let config = RelayConfig::read(&self.path.join(RELAY_TOML))?;
        Ok(self.devices()?.offices_served(&config.offices))
    }

    fn read(&self, rel: &'static str) -> Result<String, RelayError> {
        fsutil::read_text(&self.path.join(rel), rel)
    }

    /// The office CA certificate, PEM.
    pub fn ca_cert_pem(&self) -> Result<String, RelayError> {
        self.read(CA_CERT)
    }

    /// The office CA with its key (to issue device certificates).
    pub fn ca(&self) -> Result<OfficeCa, RelayError> {
        let cert = self.read(CA_CERT)?;
        let key = Zeroizing::new(self.read(CA_KEY)?);
        Ok(OfficeCa::from_pem(&cert, &key)?)
    }

    /// The relay's server certificate and key.
    pub fn relay_cert(&self) -> Result<CertKey, RelayError> {
        let cert_pem = self.read(RELAY_CERT)?;
        let key_pem = Zeroizing::new(self.read(RELAY_KEY)?);
        let cert_der = pki::cert_der_from_pem(&cert_pem, "relay certificate")?;
        Ok(CertKey {
            cert_pem,
            cert_der,
            key_pem,
        })
    }

    /// `devices.toml` as a revocation check that follows changes on disk (a single relay;
    /// [`Self::registry_revocation`] is the check for either kind of relay).
    pub fn file_revocation(&self) -> Arc<FileRevocation> {
        Arc::new(FileRevocation::new(self.path.join(DEVICES_TOML)))
    }

    /// [`Self::file_revocation`] as the trait object the TLS configuration takes.
    pub fn revocation(&self) -> Arc<dyn RevocationCheck> {
        self.file_revocation()
    }

    /// The relay's rustls server configuration (TLS 1.3, ALPN `musubi/1`, device
    /// certificates of the office CA, `revocation` consulted at every handshake).
    pub fn tls_server_config(
        &self,
        revocation: Arc<dyn RevocationCheck>,
    ) -> Result<rustls::ServerConfig, RelayError> {
        let relay = self.relay_cert()?;
        let ca = self.ca_cert_pem()?;
        Ok(tls::server_config(&relay, &ca, revocation)?)
    }

    /// Where the device registry lives: `devices.toml`, or the cluster database named in
    /// `relay.toml` (connected at first use, unless [`Self::use_database`] gave it).
    pub fn registry(&self) -> Result<&RegistryBackend, RelayError> {
        if let Some(r) = self.registry.get() {
            return Ok(r);
        }
        let backend = match &self.config.database {
            None => RegistryBackend::File(self.path.join(DEVICES_TOML)),
            Some(url) => {
                let pg = PgStorage::open(&PgOptions::new(url), self.data_keys()?)?;
                self.import_registry_file(&pg)?;
                RegistryBackend::Postgres(Arc::new(pg))
            }
        };
        Ok(self.registry.get_or_init(|| backend))
    }

    /// A cluster relay serves with the store it opened: the registry uses the same
    /// connections. Has no effect once the registry was used.
    pub fn use_database(&self, pg: &Arc<PgStorage>) -> Result<(), RelayError> {
        if self.config.database.is_some() && self.registry.get().is_none() {
            self.import_registry_file(pg)?;
            let _ = self.registry.set(RegistryBackend::Postgres(Arc::clone(pg)));
        }
        Ok(())
    }

    /// A cluster directory made before the registry moved into the database may still
    /// hold `devices.toml`: its content becomes the database's registry if that has none
    /// yet, and the file is renamed `devices.toml.imported` (no longer read).
    fn import_registry_file(&self, pg: &PgStorage) -> Result<(), RelayError> {
        let path = self.path.join(DEVICES_TOML);
        if !path.is_file() {
            return Ok(());
        }
        let _lock = self.lock()?;
        if !path.is_file() {
            return Ok(());
        }
        let text = DeviceRegistry::read(&path)?.to_text()?;
        let written = pg.registry_modify(|current| {
            Ok::<_, RelayError>(match current {
                None => Some(text.into_bytes()),
                Some(_) => None,
            })
        })??;
        let done = path.with_file_name("devices.toml.imported");
        std::fs::rename(&path, &done)
            .map_err(RelayError::io("setting devices.toml aside", &path))?;
        if written.is_some() {
            tracing::info!("devices.toml imported into the cluster database");
        } else {
            tracing::warn!(
                "devices.toml set aside: the cluster database already holds a device registry"
            );
        }
        Ok(())
    }

    /// The revocation check of a serving relay: `devices.toml` re-read when it changes, or
    /// the cluster database polled every [`crate::registry::REGISTRY_POLL`].
    pub fn registry_revocation(&self) -> Result<Arc<Revocation>, RelayError> {
        Ok(Arc::new(match self.registry()? {
            RegistryBackend::File(path) => Revocation::File(FileRevocation::new(path.clone())),
            RegistryBackend::Postgres(pg) => {
                Revocation::Postgres(PgRevocation::start(Arc::clone(pg)))
            }
        }))
    }

    /// The device registry, read now.
    pub fn devices(&self) -> Result<DeviceRegistry, RelayError> {
        self.registry()?.load()
    }

    /// The registry record of a device id.
    pub fn device(&self, id: &str) -> Result<Option<DeviceRecord>, RelayError> {
        Ok(self.devices()?.by_id(id).cloned())
    }

    /// The store passphrase: the systemd credential `musubi-relay-store-key` when
    /// `$CREDENTIALS_DIRECTORY` holds it, else `D/store.key`. The first line is used.
    pub fn store_passphrase(&self) -> Result<SecretString, RelayError> {
        let from_credential = std::env::var_os("CREDENTIALS_DIRECTORY")
            .filter(|d| !d.is_empty())
            .map(|d| PathBuf::from(d).join(STORE_KEY_CREDENTIAL))
            .filter(|p| p.is_file());
        let path = from_credential.unwrap_or_else(|| self.path.join(STORE_KEY));
        if !path.is_file() {
            return Err(RelayError::StoreKeyMissing {
                path: self.path.join(STORE_KEY),
            });
        }
        let text = Zeroizing::new(fsutil::read_text(&path, "store key")?);
        let line = text.lines().next().unwrap_or("").trim();
        if line.is_empty() {
            return Err(RelayError::BadFile {
                file: "store key",
                problem: "the store key file is empty".into(),
            });
        }
        Ok(SecretString::from(line.to_owned()))
    }

    /// Opens the relay's encrypted store, unattended.
    pub fn open_store(&self) -> Result<Store, RelayError> {
        let pass = self.store_passphrase()?;
        debug_assert!(!pass.expose_secret().is_empty());
        Ok(Store::open(&self.path.join(STORE_DIR), &pass)?)
    }

    /// The data keys of a cluster relay (`D/data.key`, or the systemd credential
    /// `musubi-relay-data-key`).
    pub fn data_keys(&self) -> Result<DataKeys, RelayError> {
        let from_credential = std::env::var_os("CREDENTIALS_DIRECTORY")
            .filter(|d| !d.is_empty())
            .map(|d| PathBuf::from(d).join("musubi-relay-data-key"))
            .filter(|p| p.is_file());
        let path = from_credential.unwrap_or_else(|| self.path.join(DATA_KEY));
        let text = Zeroizing::new(fsutil::read_text(&path, "data key")?);
        Ok(DataKeys::from_hex(text.lines().next().unwrap_or(""))?)
    }

    /// Opens the store this relay serves from: PostgreSQL when `relay.toml` names a
    /// database (bringing its schema up to date), else the embedded store.
    pub fn open_relay_store(&self) -> Result<RelayStore, RelayError> {
        match &self.config.database {
            Some(url) => Ok(RelayStore::Postgres(Arc::new(PgStorage::open(
                &PgOptions::new(url),
                self.data_keys()?,
            )?))),
            None => Ok(RelayStore::Embedded(Arc::new(self.open_store()?))),
        }
    }

    /// Holds the administration lock until the returned file is dropped.
    pub(crate) fn lock(&self) -> Result<File, RelayError> {
        let path = self.path.join(ADMIN_LOCK);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(RelayError::io("opening the administration lock", &path))?;
        file.lock()
            .map_err(RelayError::io("taking the administration lock", &path))?;
        Ok(file)
    }

    /// Adds an office to those served.
    pub fn add_office(&mut self, office: &str) -> Result<(), RelayError> {
        pki::check_office(office).map_err(|e| RelayError::invalid("--office", e.to_string()))?;
        let _lock = self.lock()?;
        let mut config = RelayConfig::read(&self.path.join(RELAY_TOML))?;
        if config.offices.iter().any(|o| o == office) {
            return Err(RelayError::OfficeExists {
                office: office.to_owned(),
            });
        }
        if config.database.is_some() {
            // A cluster relay: added for every node, in the database.
            let count = self.registry()?.modify(|reg| {
                if reg.offices.iter().any(|o| o == office) {
                    return Err(RelayError::OfficeExists {
                        office: office.to_owned(),
                    });
                }
                reg.offices.push(office.to_owned());
                Ok((reg.offices_served(&config.offices).len(), true))
            })?;
            tracing::info!(
                office,
                offices = count,
                "office added for every node of the cluster"
            );
            return Ok(());
        }
        config.offices.push(office.to_owned());
        config.write(&self.path.join(RELAY_TOML))?;
        tracing::info!(office, offices = config.offices.len(), "office added");
        self.config = config;
        Ok(())
    }

    /// Makes an enrollment: records it as pending (with the SHA-256 of a fresh secret) and
    /// writes the sealed enrollment file (0600) to `req.out`. No key or certificate is
    /// made here: the tablet makes its key pair and redeems the enrollment online
    /// ([`RelayDir::redeem`]). An unused earlier enrollment of the same name is cancelled.
    pub fn enroll(&self, req: &EnrollRequest) -> Result<Enrollment, RelayError> {
        pki::check_name("device name", &req.device_name)
            .map_err(|e| RelayError::invalid("--device", e.to_string()))?;
        let _lock = self.lock()?;
        let config = RelayConfig::read(&self.path.join(RELAY_TOML))?;
        let backend = self.registry()?;
        let current = backend.load()?;
        let served = current.offices_served(&config.offices);
        let mut office = match &req.office {
            Some(o) => {
                pki::check_office(o).map_err(|e| RelayError::invalid("--office", e.to_string()))?;
                if !served.contains(o) {
                    return Err(RelayError::UnknownOffice { office: o.clone() });
                }
                Some(o.clone())
            }
            None => None,
        };
        let relay_address = match &req.address {
            Some(a) => {
                tls::split_host_port(a)
                    .map_err(|e| RelayError::invalid("--address", e.to_string()))?;
                a.clone()
            }
            None => {
                let host = config.hosts.first().map_or("localhost", String::as_str);
                address_for(host, config.listen.port())
            }
        };
        let existing = current.active_by_name(&req.device_name).cloned();
        let device_id = match (&existing, req.reenroll) {
            (Some(d), false) => {
                return Err(RelayError::DuplicateDevice {
                    device_id: d.id.clone(),
                });
            }
            (None, true) => return Err(RelayError::NoSuchDevice),
            (Some(d), true) => {
                if office.as_ref().is_some_and(|o| o != &d.office) {
                    return Err(RelayError::invalid(
                        "--office",
                        "a re-enrolled device keeps its office",
                    ));
                }
                office = Some(d.office.clone());
                d.id.clone()
            }
            (None, false) => pki::new_device_id(),
        };
        let office = match office {
            Some(o) => o,
            None => match served.as_slice() {
                [only] => only.clone(),
                several => {
                    return Err(RelayError::OfficeRequired {
                        count: several.len(),
                    });
                }
            },
        };
        if req.out.exists() {
            return Err(RelayError::OutputExists {
                path: req.out.clone(),
            });
        }

        let subject = DeviceSubject {
            device_id,
            device_name: req.device_name.clone(),
            office,
        };
        subject
            .validate()
            .map_err(|e| RelayError::invalid("--device", e.to_string()))?;
        let ticket = EnrollmentTicket::new(&subject, &relay_address, &self.ca_cert_pem()?)?;
        let (sealed, code) = enroll::seal(&ticket)?;
        let now = chrono::Utc::now().timestamp();
        let expires =
            now.saturating_add(i64::try_from(ENROLLMENT_VALIDITY.as_secs()).unwrap_or(i64::MAX));
        let record = PendingEnrollment {
            id: subject.device_id.clone(),
            name: subject.device_name.clone(),
            office: subject.office.clone(),
            secret_sha256: hex::encode(enroll::secret_hash(ticket.secret.as_slice())),
            created_at: fsutil::now_rfc3339(),
            expires_at: format_unix(expires),
            reenroll: req.reenroll,
            failures: 0,
            redeemed_at: None,
            key_sha256: None,
            cert_pem: None,
            reuse_attempts: 0,
            cancelled_at: None,
        };
        // The file first (it must not exist; a failure leaves no record), then the record.
        // A file without a record is useless: the relay redeems only what it recorded.
        fsutil::write_new_private(&req.out, &sealed).map_err(|e| match e {
            RelayError::Io { source, .. } if source.kind() == std::io::ErrorKind::AlreadyExists => {
                RelayError::OutputExists {
                    path: req.out.clone(),
                }
            }
            other => other,
        })?;
        let name = req.device_name.clone();
        let new_record = record.clone();
        let recorded = backend.modify(move |registry| {
            // Another node may have enrolled this name meanwhile (the file backend is
            // under the administration lock; the database is re-read in the transaction).
            if !req.reenroll
                && let Some(d) = registry.active_by_name(&name)
            {
                return Err(RelayError::DuplicateDevice {
                    device_id: d.id.clone(),
                });
            }
            for e in &mut registry.enrollments {
                if e.name == name && e.state(now) == EnrollmentState::Pending {
                    e.cancelled_at = Some(fsutil::now_rfc3339());
                }
            }
            registry.enrollments.push(new_record);
            Ok(((), true))
        });
        if let Err(e) = recorded {
            // Without the record the file would be refused anyway; do not leave it around.
            let _ = std::fs::remove_file(&req.out);
            return Err(e);
        }
        tracing::info!(device = %record.id, office = %record.office, reenroll = record.reenroll, "enrollment made; waiting for the tablet to redeem it");
        Ok(Enrollment {
            record,
            relay_address,
            code,
        })
    }

    /// Revokes the active device with this name (or id). The running server refuses it
    /// from its next handshake on.
    pub fn revoke(&self, name_or_id: &str) -> Result<DeviceRecord, RelayError> {
        let _lock = self.lock()?;
        let record = self.registry()?.modify(|registry| {
            let index = registry
                .devices
                .iter()
                .position(|d| d.is_active() && d.name == name_or_id)
                .or_else(|| {
                    registry
                        .devices
                        .iter()
                        .position(|d| d.is_active() && d.id == name_or_id)
                })
                .ok_or(RelayError::NoSuchDevice)?;
            let record = &mut registry.devices[index];
            record.revoked_at = Some(fsutil::now_rfc3339());
            Ok((record.clone(), true))
        })?;
        tracing::info!(device = %record.id, "device revoked");
        Ok(record)
    }

    /// Offices, devices and document counts. Opens the store (read only use).
    pub fn status(&self) -> Result<Status, RelayError> {
        let mut config = RelayConfig::read(&self.path.join(RELAY_TOML))?;
        let registry = self.devices()?;
        config.offices = registry.offices_served(&config.offices);
        let mut per_office: BTreeMap<String, usize> = BTreeMap::new();
        let total = match &config.database {
            Some(url) => {
                let pg = PgStorage::open(&PgOptions::new(url), self.data_keys()?)?;
                for o in &config.offices {
                    let n = usize::try_from(pg.office_documents(o)?).unwrap_or(usize::MAX);
                    per_office.insert(o.clone(), n);
                }
                usize::try_from(pg.document_count()?).unwrap_or(usize::MAX)
            }
            None => {
                let store = self.open_store()?;
                let docs = store.list_docs();
                store.close()?;
                let docs = docs?;
                for d in &docs {
                    *per_office.entry(d.office.clone()).or_default() += 1;
                }
                docs.len()
            }
        };
        let offices: Vec<OfficeStatus> = config
            .offices
            .iter()
            .map(|o| OfficeStatus {
                office: o.clone(),
                documents: per_office.get(o.as_str()).copied().unwrap_or(0),
                active_devices: registry
                    .devices
                    .iter()
                    .filter(|d| &d.office == o && d.is_active())
                    .count(),
                revoked_devices: registry
                    .devices
                    .iter()
                    .filter(|d| &d.office == o && !d.is_active())
                    .count(),
            })
            .collect();
        let counted: usize = offices.iter().map(|o| o.documents).sum();
        Ok(Status {
            relay_id: config.relay_id.clone(),
            listen: config.listen.to_string(),
            hosts: config.hosts.clone(),
            other_documents: total.saturating_sub(counted),
            offices,
            devices: registry
                .devices
                .iter()
                .map(|d| DeviceStatus {
                    name: d.name.clone(),
                    id: d.id.clone(),
                    office: d.office.clone(),
                    state: if d.is_active() { "active" } else { "revoked" },
                    enrolled_at: d.enrolled_at.clone(),
                    not_after: d.not_after.clone(),
                    revoked_at: d.revoked_at.clone(),
                    enrollment_reused: registry
                        .enrollments
                        .iter()
                        .filter(|e| e.id == d.id)
                        .map(|e| e.reuse_attempts)
                        .sum(),
                })
                .collect(),
            enrollments: {
                let now = chrono::Utc::now().timestamp();
                registry
                    .enrollments
                    .iter()
                    .map(|e| EnrollmentStatus {
                        name: e.name.clone(),
                        id: e.id.clone(),
                        office: e.office.clone(),
                        state: e.state(now).as_str(),
                        reenroll: e.reenroll,
                        created_at: e.created_at.clone(),
                        expires_at: e.expires_at.clone(),
                        failures: e.failures,
                        reuse_attempts: e.reuse_attempts,
                    })
                    .collect()
            },
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use musubi_engine::net::pki::PeerIdentity;

    const OFFICE: &str = "1370100016";
    const OFFICE2: &str = "1370100024";

    fn init(tmp: &Path) -> RelayDir {
        RelayDir::init(InitOptions {
            dir: tmp.join("relay"),
            office: OFFICE.into(),
            store_kdf_work_factor: Some(10),
            ..InitOptions::default()
        })
        .unwrap()
    }

    /// Redeems the enrollment file at `out` as a tablet would (with a key made here): the
    /// identity of the certificate the relay issued.
    fn peer_of(dir: &RelayDir, out: &Path, code: &EnrollmentCode) -> PeerIdentity {
        let ticket = enroll::open(&std::fs::read(out).unwrap(), &code.grouped()).unwrap();
        let key = pki::DeviceKey::generate().unwrap();
        let pem = dir
            .redeem(&crate::enrollment::RedeemRequest {
                device_id: &ticket.device_id,
                secret: ticket.secret.as_slice(),
                spki_der: &key.spki_der,
                validity: pki::DEVICE_VALIDITY,
            })
            .unwrap()
            .unwrap();
        pki::peer_identity(&pki::cert_der_from_pem(&pem, "c").unwrap()).unwrap()
    }

    #[test]
    fn init_creates_a_complete_private_directory_and_refuses_to_overwrite() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = init(tmp.path());
        let again = RelayDir::open(dir.path()).unwrap();
        assert_eq!(again.config(), dir.config());
        assert_eq!(dir.offices(), [OFFICE]);
        assert_eq!(dir.config().hosts, ["localhost", "127.0.0.1"]);
        dir.ca().unwrap();
        dir.relay_cert().unwrap();
        dir.tls_server_config(dir.revocation()).unwrap();
        dir.open_store().unwrap().close().unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(dir.path()), 0o700);
            for f in [CA_KEY, RELAY_KEY, STORE_KEY] {
                assert_eq!(mode(&dir.path().join(f)), 0o600, "{f}");
            }
        }
        // No staging directory is left behind.
        let names: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["relay"]);
        let err = RelayDir::init(InitOptions {
            dir: dir.path().to_path_buf(),
            office: OFFICE.into(),
            ..InitOptions::default()
        })
        .unwrap_err();
        assert!(matches!(err, RelayError::AlreadyExists { .. }), "{err}");
        let err = RelayDir::init(InitOptions {
            dir: tmp.path().join("bad"),
            office: "12345".into(),
            ..InitOptions::default()
        })
        .unwrap_err();
        assert!(err.is_invalid_input(), "{err}");
        assert!(!tmp.path().join("bad").exists());
    }

    #[test]
    fn revocation_check_follows_the_registry_on_disk() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = init(tmp.path());
        let check = dir.file_revocation();
        let out = tmp.path().join("a.musubi-enroll");
        let e = dir
            .enroll(&EnrollRequest {
                device_name: "tablet-a".into(),
                office: None,
                address: None,
                out: out.clone(),
                reenroll: false,
            })
            .unwrap();
        assert_eq!(e.relay_address, "localhost:4433");
        let peer = peer_of(&dir, &out, &e.code);
        assert!(!check.is_revoked(&peer));
        // Same id, different certificate: refused.
        let mut forged = peer.clone();
        forged.fingerprint[0] ^= 1;
        assert!(check.is_revoked(&forged));
        // Unknown id: refused.
        let mut unknown = peer.clone();
        unknown.device_id = pki::new_device_id();
        assert!(check.is_revoked(&unknown));

        dir.revoke("tablet-a").unwrap();
        assert!(check.is_revoked(&peer), "revocation seen without a restart");
        assert!(matches!(
            dir.revoke("tablet-a"),
            Err(RelayError::NoSuchDevice)
        ));

        // An unreadable registry refuses everyone.
        std::fs::write(dir.path().join(DEVICES_TOML), "not toml [").unwrap();
        assert!(check.is_revoked(&peer));
    }

    /// Copies a relay directory as a second node would be made (`cp -a`).
    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            let target = to.join(e.file_name());
            if e.file_type().unwrap().is_dir() {
                copy_dir(&e.path(), &target);
            } else {
                std::fs::copy(e.path(), target).unwrap();
            }
        }
    }

    #[test]
    fn a_cluster_keeps_one_registry_in_the_database_and_nodes_follow_revocations() {
        let db = musubi_pgtest::database();
        let tmp = tempfile::tempdir().unwrap();
        let one = RelayDir::init(InitOptions {
            dir: tmp.path().join("one"),
            office: OFFICE.into(),
            database: Some(db.url()),
            ..InitOptions::default()
        })
        .unwrap();
        assert!(!one.path().join(DEVICES_TOML).exists());
        copy_dir(one.path(), &tmp.path().join("two"));
        let two = RelayDir::open(&tmp.path().join("two")).unwrap();
        let watch = two.registry_revocation().unwrap();
        let e = one
            .enroll(&EnrollRequest {
                device_name: "tablet-a".into(),
                office: None,
                address: Some("relay.example.jp:5000".into()),
                out: tmp.path().join("a"),
                reenroll: false,
            })
            .unwrap();
        // Redeemed through the other node; both see the device.
        let peer = peer_of(&two, &tmp.path().join("a"), &e.code);
        assert!(one.device(&peer.device_id).unwrap().unwrap().is_active());
        // Known to node two's check at once (a refused device makes it re-check).
        assert!(!watch.is_revoked(&peer));
        // A second enrollment of the same name through node two is refused.
        let err = two
            .enroll(&EnrollRequest {
                device_name: "tablet-a".into(),
                office: None,
                address: None,
                out: tmp.path().join("a2"),
                reenroll: false,
            })
            .unwrap_err();
        assert!(matches!(err, RelayError::DuplicateDevice { .. }), "{err}");
        one.revoke("tablet-a").unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
        while !watch.is_revoked(&peer) {
            assert!(
                std::time::Instant::now() < deadline,
                "node two still admits a revoked device"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        assert!(
            watch
                .registry()
                .unwrap()
                .by_id(&peer.device_id)
                .unwrap()
                .revoked_at
                .is_some(),
            "the serving path sees the revocation"
        );
        assert_eq!(two.status().unwrap().offices[0].revoked_devices, 1);

        // An office added through node two is served by node one (no copy of relay.toml).
        let mut two = two;
        two.add_office(OFFICE2).unwrap();
        assert_eq!(one.offices_served().unwrap(), [OFFICE, OFFICE2]);
        // The serving path of node two sees it at its next poll.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
        while watch.registry().unwrap().offices_served(one.offices()) != [OFFICE, OFFICE2] {
            assert!(
                std::time::Instant::now() < deadline,
                "the poll missed the office"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let err = one.clone().add_office(OFFICE2).unwrap_err();
        assert!(matches!(err, RelayError::OfficeExists { .. }), "{err}");
        let b = one
            .enroll(&EnrollRequest {
                device_name: "tablet-b".into(),
                office: Some(OFFICE2.into()),
                address: Some("relay.example.jp:5000".into()),
                out: tmp.path().join("b"),
                reenroll: false,
            })
            .unwrap();
        assert_eq!(b.record.office, OFFICE2);
        let status = one.status().unwrap();
        assert_eq!(status.offices.len(), 2);
        // relay.toml of either node still names only the first office.
        assert_eq!(
            RelayConfig::read(&one.path().join(RELAY_TOML))
                .unwrap()
                .offices,
            [OFFICE]
        );
    }

    #[test]
    fn a_cluster_directory_with_a_devices_file_imports_it_once() {
        let db = musubi_pgtest::database();
        let tmp = tempfile::tempdir().unwrap();
        let one = RelayDir::init(InitOptions {
            dir: tmp.path().join("one"),
            office: OFFICE.into(),
            database: Some(db.url()),
            ..InitOptions::default()
        })
        .unwrap();
        // As a directory made before the registry moved into the database.
        let mut reg = DeviceRegistry::new();
        reg.devices.push(DeviceRecord {
            name: "tablet-old".into(),
            id: pki::new_device_id(),
            office: OFFICE.into(),
            fingerprint: "ab".repeat(32),
            enrolled_at: "2026-01-01T00:00:00Z".into(),
            not_after: "2027-01-01T00:00:00Z".into(),
            revoked_at: None,
            previous_fingerprint: None,
        });
        reg.write(&one.path().join(DEVICES_TOML)).unwrap();
        copy_dir(one.path(), &tmp.path().join("two"));
        let one = RelayDir::open(one.path()).unwrap();
        assert_eq!(one.devices().unwrap(), reg);
        assert!(!one.path().join(DEVICES_TOML).exists());
        assert!(one.path().join("devices.toml.imported").exists());
        one.revoke("tablet-old").unwrap();
        // The second node's stale copy is set aside, not imported over the database's.
        let two = RelayDir::open(&tmp.path().join("two")).unwrap();
        let seen = two.devices().unwrap();
        assert!(seen.devices[0].revoked_at.is_some());
        assert!(!two.path().join(DEVICES_TOML).exists());
    }

    #[test]
    fn enrollment_rules() {
        let tmp = tempfile::tempdir().unwrap();
        let mut dir = init(tmp.path());
        let req = |name: &str, office: Option<&str>, out: &str| EnrollRequest {
            device_name: name.into(),
            office: office.map(Into::into),
            address: Some("relay.example.jp:5000".into()),
            out: tmp.path().join(out),
            reenroll: false,
        };
        let a = dir.enroll(&req("tablet-a", None, "a")).unwrap();
        assert_eq!(a.record.office, OFFICE);
        assert_eq!(a.relay_address, "relay.example.jp:5000");
        peer_of(&dir, &tmp.path().join("a"), &a.code);
        let err = dir.enroll(&req("tablet-a", None, "a2")).unwrap_err();
        assert!(matches!(err, RelayError::DuplicateDevice { .. }), "{err}");
        assert!(!tmp.path().join("a2").exists());
        let err = dir.enroll(&req("tablet-b", None, "a")).unwrap_err();
        assert!(matches!(err, RelayError::OutputExists { .. }), "{err}");
        let err = dir
            .enroll(&req("tablet-b", Some(OFFICE2), "b"))
            .unwrap_err();
        assert!(matches!(err, RelayError::UnknownOffice { .. }), "{err}");

        dir.add_office(OFFICE2).unwrap();
        assert!(matches!(
            dir.add_office(OFFICE2),
            Err(RelayError::OfficeExists { .. })
        ));
        let err = dir.enroll(&req("tablet-b", None, "b")).unwrap_err();
        assert!(
            matches!(err, RelayError::OfficeRequired { count: 2 }),
            "{err}"
        );
        let b = dir.enroll(&req("tablet-b", Some(OFFICE2), "b")).unwrap();
        assert_eq!(b.record.office, OFFICE2);
        peer_of(&dir, &tmp.path().join("b"), &b.code);

        // After revocation the name can be enrolled again (a replacement tablet).
        dir.revoke(&a.record.id).unwrap();
        let a2 = dir.enroll(&req("tablet-a", Some(OFFICE), "a3")).unwrap();
        assert_ne!(a2.record.id, a.record.id);
        peer_of(&dir, &tmp.path().join("a3"), &a2.code);

        let status = dir.status().unwrap();
        assert_eq!(status.offices.len(), 2);
        assert_eq!(status.offices[0].active_devices, 1);
        assert_eq!(status.offices[0].revoked_devices, 1);
        assert_eq!(status.offices[1].active_devices, 1);
        assert_eq!(status.devices.len(), 3);
        assert_eq!(status.enrollments.len(), 3);
        assert!(status.enrollments.iter().all(|e| e.state == "redeemed"));
        assert_eq!(dir.device(&b.record.id).unwrap().unwrap().office, OFFICE2);
    }

    #[test]
    fn pending_enrollments_are_redeemed_once_and_locked_after_wrong_secrets() {
        use crate::devices::MAX_REDEEM_FAILURES;
        use crate::enrollment::RedeemRequest;
        use musubi_engine::net::certx::refusal;
        let tmp = tempfile::tempdir().unwrap();
        let dir = init(tmp.path());
        let enroll_as = |name: &str, file: &str| {
            let out = tmp.path().join(file);
            let e = dir
                .enroll(&EnrollRequest {
                    device_name: name.into(),
                    office: None,
                    address: None,
                    out: out.clone(),
                    reenroll: false,
                })
                .unwrap();
            enroll::open(&std::fs::read(out).unwrap(), &e.code.grouped()).unwrap()
        };
        let redeem = |t: &enroll::EnrollmentTicket, secret: &[u8], key: &pki::DeviceKey| {
            dir.redeem(&RedeemRequest {
                device_id: &t.device_id,
                secret,
                spki_der: &key.spki_der,
                validity: pki::DEVICE_VALIDITY,
            })
            .unwrap()
        };
        // Pending: recorded with the hash of the secret only; no device yet.
        let t = enroll_as("tablet-a", "a");
        let text = std::fs::read_to_string(dir.path().join(DEVICES_TOML)).unwrap();
        assert!(!text.contains(&hex::encode(t.secret.as_slice())));
        assert!(text.contains(&hex::encode(enroll::secret_hash(t.secret.as_slice()))));
        assert!(dir.device(&t.device_id).unwrap().is_none());
        assert_eq!(dir.status().unwrap().enrollments[0].state, "pending");

        let k1 = pki::DeviceKey::generate().unwrap();
        let first = redeem(&t, t.secret.as_slice(), &k1).unwrap();
        // The same key again (a lost answer): the same certificate, no reuse counted.
        assert_eq!(redeem(&t, t.secret.as_slice(), &k1).unwrap(), first);
        // Another key with the right secret: a copied file and code. Refused, counted.
        let k2 = pki::DeviceKey::generate().unwrap();
        assert_eq!(
            redeem(&t, t.secret.as_slice(), &k2).unwrap_err().code,
            refusal::USED
        );
        let status = dir.status().unwrap();
        assert_eq!(status.enrollments[0].reuse_attempts, 1);
        assert_eq!(status.devices[0].enrollment_reused, 1);
        let rec = dir.device(&t.device_id).unwrap().unwrap();
        let issued = pki::peer_identity(&pki::cert_der_from_pem(&first, "c").unwrap()).unwrap();
        assert_eq!(rec.fingerprint, issued.fingerprint_hex());

        // Wrong secrets: refused, and the enrollment is locked after the limit, even for
        // the right secret afterwards.
        let t2 = enroll_as("tablet-b", "b");
        for i in 1..=MAX_REDEEM_FAILURES {
            let r = redeem(&t2, &[0u8; 32], &k2).unwrap_err();
            let expect = if i == MAX_REDEEM_FAILURES {
                refusal::LOCKED
            } else {
                refusal::UNKNOWN
            };
            assert_eq!(r.code, expect, "attempt {i}");
        }
        assert_eq!(
            redeem(&t2, t2.secret.as_slice(), &k2).unwrap_err().code,
            refusal::LOCKED
        );
        assert!(dir.device(&t2.device_id).unwrap().is_none());
        assert_eq!(dir.status().unwrap().enrollments[1].state, "locked");

        // An expired enrollment is refused.
        let t3 = enroll_as("tablet-c", "c");
        let mut reg = dir.devices().unwrap();
        reg.enrollments[2].expires_at = "2020-01-01T00:00:00Z".into();
        reg.write(&dir.path().join(DEVICES_TOML)).unwrap();
        assert_eq!(
            redeem(&t3, t3.secret.as_slice(), &k2).unwrap_err().code,
            refusal::EXPIRED
        );

        // A newer enrollment of the same name cancels the unused one.
        let t4 = enroll_as("tablet-d", "d");
        let t5 = enroll_as("tablet-d", "d2");
        assert_eq!(
            redeem(&t4, t4.secret.as_slice(), &k2).unwrap_err().code,
            refusal::UNKNOWN
        );
        redeem(&t5, t5.secret.as_slice(), &k2).unwrap();

        // Re-enrollment keeps the id and replaces the certificate.
        let out = tmp.path().join("a-again");
        let e = dir
            .enroll(&EnrollRequest {
                device_name: "tablet-a".into(),
                office: None,
                address: None,
                out: out.clone(),
                reenroll: true,
            })
            .unwrap();
        let again = enroll::open(&std::fs::read(out).unwrap(), &e.code.grouped()).unwrap();
        assert_eq!(again.device_id, t.device_id);
        let k3 = pki::DeviceKey::generate().unwrap();
        let pem = redeem(&again, again.secret.as_slice(), &k3).unwrap();
        let id = pki::peer_identity(&pki::cert_der_from_pem(&pem, "c").unwrap()).unwrap();
        let rec = dir.device(&t.device_id).unwrap().unwrap();
        assert_eq!(rec.fingerprint, id.fingerprint_hex());
        assert!(!rec.admits(&issued), "the old certificate is replaced");
        // --renew needs an active device of that name.
        let err = dir
            .enroll(&EnrollRequest {
                device_name: "nobody".into(),
                office: None,
                address: None,
                out: tmp.path().join("n"),
                reenroll: true,
            })
            .unwrap_err();
        assert!(matches!(err, RelayError::NoSuchDevice), "{err}");
    }
}

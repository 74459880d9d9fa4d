//! Writes the key material of the enrollment targets to `fixtures/enroll/` (run once; the
//! files are committed, so the targets and `make_seeds` stay deterministic): an office
//! CA, a device key pair, a device certificate the CA issued for that key, and the
//! self-signed enrollment certificate of the same key. Test keys only, for fuzzing.
//! Run from `fuzz/`: `cargo run --features net --example make_enroll_fixtures`.

use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime};

use musubi_engine::net::pki::{self, DeviceKey, OfficeCa};
use musubi_fuzz::enroll_fixture;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = Path::new("fixtures/enroll");
    fs::create_dir_all(out)?;
    let ca = OfficeCa::generate("fuzz relay")?;
    let (ca_cert, ca_key) = ca.to_pem();
    let key = DeviceKey::generate()?;
    let subject = enroll_fixture::subject();
    // Fixed dates: 2026-01-01 for twenty years.
    let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600);
    let end = start + Duration::from_secs(20 * 365 * 24 * 3600);
    let (device_cert, _) =
        pki::issue_device_cert_for_key(&ca, &subject, &key.spki_der, start, end)?;
    let request = key.enrollment_cert(&subject.device_id)?;
    fs::write(out.join("office_ca.pem"), ca_cert)?;
    fs::write(out.join("office_ca_key.pem"), ca_key.as_str())?;
    fs::write(out.join("device_key.pem"), key.key_pem.as_str())?;
    fs::write(out.join("device_cert.pem"), device_cert)?;
    fs::write(out.join("enroll_request.der"), &request.cert_der)?;
    Ok(())
}

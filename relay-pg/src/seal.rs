//! The relay data keys: sealing (AES-256-GCM) and keyed tags (HMAC-SHA256).
//!
//! One key file holds two independent 256-bit keys: the sealing key encrypts every
//! value that is or may be personal data before it reaches PostgreSQL; the index key
//! makes the tags of the columns the relay queries by (office, kind, person key, card
//! certificate), so equal values still compare equal in SQL but a database dump cannot
//! test guesses (a person key is a hash of low-entropy insurance numbers).

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

use crate::PgError;

/// Length of the key file's secret: two 32-byte keys.
pub const KEY_BYTES: usize = 64;

/// What a sealed value's associated data starts with (format and version).
const AAD_PREFIX: &[u8] = b"musubi relay-pg seal v1\0";

/// The two keys of a relay's PostgreSQL data.
pub struct DataKeys {
    seal: LessSafeKey,
    index: hmac::Key,
    rng: SystemRandom,
}

impl std::fmt::Debug for DataKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKeys(..)")
    }
}

impl DataKeys {
    /// New random keys, as lower-case hex for the key file.
    pub fn generate_hex() -> Result<Zeroizing<String>, PgError> {
        let mut raw = Zeroizing::new([0u8; KEY_BYTES]);
        SystemRandom::new()
            .fill(raw.as_mut())
            .map_err(|_| PgError::Keys("the system random generator failed"))?;
        Ok(Zeroizing::new(hex::encode(&raw[..])))
    }

    /// The keys from the key file's text (128 hex digits, whitespace around ignored).
    pub fn from_hex(text: &str) -> Result<DataKeys, PgError> {
        let raw = Zeroizing::new(
            hex::decode(text.trim()).map_err(|_| PgError::Keys("the data key is not hex"))?,
        );
        if raw.len() != KEY_BYTES {
            return Err(PgError::Keys(
                "the data key must be 64 bytes (128 hex digits)",
            ));
        }
        let seal = UnboundKey::new(&AES_256_GCM, &raw[..32])
            .map_err(|_| PgError::Keys("the sealing key is unusable"))?;
        Ok(DataKeys {
            seal: LessSafeKey::new(seal),
            index: hmac::Key::new(hmac::HMAC_SHA256, &raw[32..]),
            rng: SystemRandom::new(),
        })
    }

    fn aad(what: &str, row: &[u8]) -> Vec<u8> {
        let mut aad = Vec::with_capacity(AAD_PREFIX.len() + what.len() + 1 + row.len());
        aad.extend_from_slice(AAD_PREFIX);
        aad.extend_from_slice(what.as_bytes());
        aad.push(0);
        aad.extend_from_slice(row);
        aad
    }

    /// Seals `plain` as the value `what` (table.column) of row `row`: a fresh random
    /// nonce, then the ciphertext with its tag. A value moved to another row or column
    /// does not open.
    pub fn seal(&self, what: &str, row: &[u8], plain: &[u8]) -> Result<Vec<u8>, PgError> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .map_err(|_| PgError::Keys("the system random generator failed"))?;
        let mut buf = plain.to_vec();
        self.seal
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(Self::aad(what, row)),
                &mut buf,
            )
            .map_err(|_| PgError::Keys("sealing failed"))?;
        let mut out = Vec::with_capacity(NONCE_LEN + buf.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&buf);
        Ok(out)
    }

    /// Opens a value sealed by [`seal`](Self::seal) for the same `what` and `row`.
    pub fn open(&self, what: &'static str, row: &[u8], sealed: &[u8]) -> Result<Vec<u8>, PgError> {
        if sealed.len() < NONCE_LEN {
            return Err(PgError::Unsealable(what));
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce =
            Nonce::try_assume_unique_for_key(nonce).map_err(|_| PgError::Unsealable(what))?;
        let mut buf = body.to_vec();
        let plain = self
            .seal
            .open_in_place(nonce, Aad::from(Self::aad(what, row)), &mut buf)
            .map_err(|_| PgError::Unsealable(what))?;
        Ok(plain.to_vec())
    }

    /// Opens a sealed UTF-8 string.
    pub fn open_str(
        &self,
        what: &'static str,
        row: &[u8],
        sealed: &[u8],
    ) -> Result<String, PgError> {
        String::from_utf8(self.open(what, row, sealed)?).map_err(|_| PgError::Unsealable(what))
    }

    /// The keyed tag of `value` in the domain `what` (e.g. "office", "person").
    pub fn tag(&self, what: &str, value: &str) -> Vec<u8> {
        let mut ctx = hmac::Context::with_key(&self.index);
        ctx.update(b"musubi relay-pg tag v1\0");
        ctx.update(what.as_bytes());
        ctx.update(b"\0");
        ctx.update(value.as_bytes());
        ctx.sign().as_ref().to_vec()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn sealed_values_open_only_for_their_row_and_column_and_tags_are_keyed() {
        let keys = DataKeys::from_hex(&DataKeys::generate_hex().unwrap()).unwrap();
        let other = DataKeys::from_hex(&DataKeys::generate_hex().unwrap()).unwrap();
        let a = keys
            .seal("docs.title", b"row-1", "山田 太郎".as_bytes())
            .unwrap();
        let b = keys
            .seal("docs.title", b"row-1", "山田 太郎".as_bytes())
            .unwrap();
        assert_ne!(a, b, "a fresh nonce per value");
        assert_eq!(
            keys.open_str("docs.title", b"row-1", &a).unwrap(),
            "山田 太郎"
        );
        assert!(
            keys.open("docs.title", b"row-2", &a).is_err(),
            "moved to another row"
        );
        assert!(
            keys.open("docs.label", b"row-1", &a).is_err(),
            "moved to another column"
        );
        assert!(
            other.open("docs.title", b"row-1", &a).is_err(),
            "another key"
        );
        let mut flipped = a.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(
            keys.open("docs.title", b"row-1", &flipped).is_err(),
            "tampered"
        );
        assert!(
            keys.open("docs.title", b"row-1", &a[..5]).is_err(),
            "truncated"
        );
        assert_eq!(
            keys.tag("office", "1370000001"),
            keys.tag("office", "1370000001")
        );
        assert_ne!(
            keys.tag("office", "1370000001"),
            keys.tag("kind", "1370000001")
        );
        assert_ne!(
            keys.tag("office", "1370000001"),
            other.tag("office", "1370000001")
        );
        assert!(DataKeys::from_hex("abcd").is_err());
        assert!(DataKeys::from_hex(&"zz".repeat(64)).is_err());
    }
}

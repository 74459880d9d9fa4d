//! Opaque identifiers shared by every part of the engine.

use std::fmt;
use std::str::FromStr;

/// A document id: 128 random bits, shown as 32 lower-case hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DocId([u8; 16]);

impl DocId {
    /// A fresh random id whose hex form the 個人番号 guard cannot mistake for a My Number.
    ///
    /// About one random id in nine hundred holds exactly twelve digits in a row with a valid
    /// check digit; a document naming such an id (a case's `subject_id`, say) would then
    /// be refused by the guard. Drawing again costs nothing and keeps every reference valid.
    pub fn random() -> Self {
        loop {
            let id = Self(rand::random());
            if !crate::identifiers::contains_my_number(&id.to_string()) {
                return id;
            }
        }
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// Builds an id from raw bytes.
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// The first 8 hex digits: enough to tell documents apart in logs, never personal.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }
}

impl fmt::Display for DocId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for DocId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DocId({})", self)
    }
}

/// A string that is not a document id.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("not a document id: expected 32 hexadecimal digits")]
pub struct BadDocId;

impl FromStr for DocId {
    type Err = BadDocId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 32 {
            return Err(BadDocId);
        }
        let mut out = [0u8; 16];
        hex::decode_to_slice(s, &mut out).map_err(|_| BadDocId)?;
        Ok(Self(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_parse_round_trip() {
        let id = DocId::random();
        assert_eq!(id.to_string().parse::<DocId>(), Ok(id));
        assert_eq!("xyz".parse::<DocId>(), Err(BadDocId));
        assert_eq!("g".repeat(32).parse::<DocId>(), Err(BadDocId));
    }

    /// Without the redraw in `random`, some twenty of these twenty thousand ids would
    /// look like a 個人番号 and every document naming them would be refused.
    #[test]
    fn random_ids_never_look_like_a_my_number() {
        for _ in 0..20_000 {
            let id = DocId::random().to_string();
            assert!(!crate::identifiers::contains_my_number(&id), "{id}");
        }
    }
}

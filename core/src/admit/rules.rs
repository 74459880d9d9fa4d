//! The [`Admission`] a relay and a bundle import use: the document rules of
//! [`super::check_document`] on the state the incoming changes produce, and, for a
//! registration new to the store, its card evidence (`card::evidence`) checked against the
//! trust anchors of the receiving side and the device that brought it.

use std::sync::Arc;

use crate::card::evidence;
use crate::card::roots::TrustStore;
use crate::schema::DocKind;
use crate::sync::admission::{Admission, Admitted, EvidenceVerdict, Incoming, Refused, Uploader};

/// The rules of a receiving store.
#[derive(Clone)]
pub struct Rules {
    trust: Arc<TrustStore>,
}

impl std::fmt::Debug for Rules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rules")
            .field("anchors", &self.trust.anchors().len())
            .finish()
    }
}

impl Rules {
    /// Rules whose card evidence must chain to one of `trust` (the bundled J-LIS roots,
    /// plus a test anchor only where the operator asked for one).
    pub fn new(trust: TrustStore) -> Rules {
        Rules {
            trust: Arc::new(trust),
        }
    }

    /// Rules over the bundled J-LIS roots only.
    pub fn bundled() -> Result<Rules, crate::card::roots::AnchorError> {
        Ok(Rules::new(TrustStore::bundled()?))
    }
}

impl Admission for Rules {
    fn admit(&self, incoming: &Incoming<'_>) -> Result<Admitted, Refused> {
        let read = super::document::checked_merged(incoming)?;
        let conflicts = read.as_ref().map(|(_, conflicts)| *conflicts);
        let Some((merged, _)) = read.filter(|_| {
            incoming.kind == DocKind::Registration.as_str() && incoming.stored.is_none()
        }) else {
            return Ok(Admitted {
                conflicts,
                ..Admitted::default()
            });
        };
        // A registration new to this store counts only on card evidence checked here.
        let attested = evidence::check_registration(incoming.id, &merged, &self.trust)
            .map_err(|e| Refused::at(e.code(), e.field()))?;
        let statement = &attested.statement;
        if statement.office != incoming.office {
            return Err(Refused::at("evidence", "statement office"));
        }
        let device_ok = match incoming.uploader {
            Uploader::Device(d) => statement.device == d,
            Uploader::Bundle(enrolled) => enrolled.contains(&statement.device),
            Uploader::TabletBundle => true,
        };
        if !device_ok {
            return Err(Refused::at("evidence", "statement device"));
        }
        Ok(Admitted {
            evidence: Some(EvidenceVerdict {
                person: statement.person.clone(),
                cert_fingerprint: attested.cert_fingerprint.clone(),
                device: statement.device.clone(),
            }),
            conflicts,
        })
    }
}

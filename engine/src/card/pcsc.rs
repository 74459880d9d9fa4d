//! PC/SC transport (pcsc-lite through the `pcsc` crate): list readers, wait for a card to
//! be inserted or removed, and hold a card **exclusively** for a whole verification, then
//! power it down so no unlocked key survives the session.

use super::transport::{CardTransport, TransportError};
use std::ffi::CString;
use std::time::{Duration, Instant};

fn map_err(e: pcsc::Error) -> TransportError {
    use pcsc::Error as E;
    match e {
        E::NoService | E::ServiceStopped => TransportError::NoService,
        E::NoReadersAvailable | E::UnknownReader | E::ReaderUnavailable => {
            TransportError::NoReader(String::new())
        }
        E::NoSmartcard => TransportError::NoCard,
        E::RemovedCard => TransportError::Removed,
        E::ResetCard => TransportError::Reset,
        E::SharingViolation => TransportError::InUse,
        E::UnresponsiveCard | E::UnsupportedCard | E::UnpoweredCard => TransportError::Unresponsive,
        other => TransportError::Other(other.to_string()),
    }
}

/// A PC/SC context (connection to pcscd).
pub struct Pcsc {
    ctx: pcsc::Context,
}

/// A reader and whether a card is in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReaderInfo {
    /// Reader name as PC/SC reports it.
    pub name: String,
    /// A card is present.
    pub card_present: bool,
}

impl Pcsc {
    /// Connects to the smart-card service.
    pub fn establish() -> Result<Pcsc, TransportError> {
        let ctx = pcsc::Context::establish(pcsc::Scope::User).map_err(map_err)?;
        Ok(Pcsc { ctx })
    }

    /// All readers, with card presence.
    pub fn readers(&self) -> Result<Vec<ReaderInfo>, TransportError> {
        let names = match self.ctx.list_readers_owned() {
            Ok(n) => n,
            Err(pcsc::Error::NoReadersAvailable) => return Ok(Vec::new()),
            Err(e) => return Err(map_err(e)),
        };
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let mut states: Vec<pcsc::ReaderState> = names
            .iter()
            .map(|n| pcsc::ReaderState::new(n.clone(), pcsc::State::UNAWARE))
            .collect();
        self.ctx
            .get_status_change(Duration::from_millis(0), &mut states)
            .map_err(map_err)?;
        Ok(states
            .iter()
            .map(|s| ReaderInfo {
                name: s.name().to_string_lossy().into_owned(),
                card_present: s.event_state().contains(pcsc::State::PRESENT),
            })
            .collect())
    }

    fn reader_name(&self, wanted: Option<&str>) -> Result<CString, TransportError> {
        let readers = self.readers()?;
        if readers.is_empty() {
            return Err(TransportError::NoReader(String::new()));
        }
        match wanted {
            Some(w) => readers
                .iter()
                .find(|r| r.name == w)
                .map(|r| CString::new(r.name.clone()))
                .transpose()
                .map_err(|_| TransportError::NoReader(format!(" named {w}")))?
                .ok_or_else(|| TransportError::NoReader(format!(" named {w}"))),
            None => {
                let pick = readers
                    .iter()
                    .find(|r| r.card_present)
                    .unwrap_or(&readers[0]);
                CString::new(pick.name.clone()).map_err(|_| TransportError::NoReader(String::new()))
            }
        }
    }

    fn wait_state(
        &self,
        reader: &CString,
        present: bool,
        timeout: Duration,
    ) -> Result<(), TransportError> {
        let deadline = Instant::now() + timeout;
        let mut state = [pcsc::ReaderState::new(reader.clone(), pcsc::State::UNAWARE)];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.ctx.get_status_change(left, &mut state) {
                Ok(()) => {}
                Err(pcsc::Error::Timeout) => {
                    return Err(if present {
                        TransportError::NoCard
                    } else {
                        TransportError::Other("the card was not removed in time".to_owned())
                    });
                }
                Err(e) => return Err(map_err(e)),
            }
            let ev = state[0].event_state();
            if ev.contains(pcsc::State::PRESENT) == present && !ev.contains(pcsc::State::MUTE) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(if present {
                    TransportError::NoCard
                } else {
                    TransportError::Other("the card was not removed in time".to_owned())
                });
            }
            state[0].sync_current_state();
        }
    }

    /// Waits up to `timeout` for a card in `reader` (or the first reader), then connects
    /// to it exclusively. A zero timeout does not wait.
    pub fn connect(
        &self,
        reader: Option<&str>,
        timeout: Duration,
    ) -> Result<PcscCard, TransportError> {
        let name = self.reader_name(reader)?;
        self.wait_state(&name, true, timeout)?;
        let card = self
            .ctx
            .connect(&name, pcsc::ShareMode::Exclusive, pcsc::Protocols::ANY)
            .map_err(map_err)?;
        Ok(PcscCard {
            card: Some(card),
            reader: name.to_string_lossy().into_owned(),
        })
    }

    /// Waits up to `timeout` until the card is taken out of `reader`.
    pub fn wait_removal(&self, reader: &str, timeout: Duration) -> Result<(), TransportError> {
        let name = CString::new(reader).map_err(|_| TransportError::NoReader(String::new()))?;
        self.wait_state(&name, false, timeout)
    }
}

/// A card held exclusively. Dropping it powers the card down.
pub struct PcscCard {
    card: Option<pcsc::Card>,
    reader: String,
}

impl PcscCard {
    /// The reader's name.
    pub fn reader(&self) -> &str {
        &self.reader
    }

    /// Ends the session and powers the card down (clears any verified PIN state).
    pub fn finish(mut self) -> Result<(), TransportError> {
        self.power_down()
    }

    fn power_down(&mut self) -> Result<(), TransportError> {
        if let Some(card) = self.card.take() {
            card.disconnect(pcsc::Disposition::UnpowerCard)
                .map_err(|(_, e)| map_err(e))?;
        }
        Ok(())
    }
}

impl Drop for PcscCard {
    fn drop(&mut self) {
        let _ = self.power_down();
    }
}

impl CardTransport for PcscCard {
    fn transmit(&mut self, capdu: &[u8]) -> Result<Vec<u8>, TransportError> {
        let card = self
            .card
            .as_ref()
            .ok_or_else(|| TransportError::Other("session already ended".to_owned()))?;
        let mut buf = vec![0u8; pcsc::MAX_BUFFER_SIZE_EXTENDED];
        let resp = card.transmit(capdu, &mut buf).map_err(map_err)?.to_vec();
        if resp.len() < 2 {
            // Some drivers (vpcd among them) answer an empty response when the card went
            // away mid-command; the card status then tells removal from a broken card.
            return removed_or(card, resp);
        }
        Ok(resp)
    }
}

/// After an impossible (short) response: `Removed` if the card is gone within a moment,
/// else the bytes go up as they are (the APDU layer reports them as corrupt).
fn removed_or(card: &pcsc::Card, resp: Vec<u8>) -> Result<Vec<u8>, TransportError> {
    let deadline = Instant::now() + Duration::from_millis(1500);
    loop {
        match card.status2_owned() {
            Err(e) => return Err(map_err(e)),
            Ok(st) if !st.status().contains(pcsc::Status::PRESENT) => {
                return Err(TransportError::Removed);
            }
            Ok(_) => {}
        }
        if Instant::now() >= deadline {
            return Ok(resp);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

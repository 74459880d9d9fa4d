//! The one thing a card driver has to provide: send a command APDU, get the response.

/// Sends command APDUs to a card and returns the response bytes (data + SW1 SW2).
///
/// Implementations: [`crate::card::pcsc::PcscCard`] (a real reader through pcscd),
/// [`crate::card::testing::ScriptedTransport`] (a test transport replaying a script), and the
/// in-process virtual card of the `musubi-vcard` crate (also for tests).
pub trait CardTransport {
    /// Exchanges one APDU.
    fn transmit(&mut self, capdu: &[u8]) -> Result<Vec<u8>, TransportError>;
}

impl<T: CardTransport + ?Sized> CardTransport for &mut T {
    fn transmit(&mut self, capdu: &[u8]) -> Result<Vec<u8>, TransportError> {
        (**self).transmit(capdu)
    }
}

/// Why an exchange with the card failed below the APDU level.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The smart-card service (pcscd) is not running or not reachable.
    #[error("カードリーダーのサービス (pcscd) に接続できません (smart-card service not available)")]
    NoService,
    /// No reader is connected (or the named reader does not exist).
    #[error("カードリーダーが見つかりません (no card reader{0})")]
    NoReader(String),
    /// The reader has no card.
    #[error("カードが置かれていません (no card in the reader)")]
    NoCard,
    /// The card was removed during the session; everything read is discarded.
    #[error("カードが途中で取り外されました (card removed during the session)")]
    Removed,
    /// The card was reset by someone else during the session.
    #[error("カードがリセットされました (card reset by another program during the session)")]
    Reset,
    /// Another program holds the card.
    #[error("カードは他のプログラムが使用中です (card in use by another program)")]
    InUse,
    /// The card does not answer (mute, unsupported protocol).
    #[error("カードが応答しません (card not responding)")]
    Unresponsive,
    /// Anything else from the driver.
    #[error("カードとの通信に失敗しました (card communication failed: {0})")]
    Other(String),
}

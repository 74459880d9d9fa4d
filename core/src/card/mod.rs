//! My Number card (マイナンバーカード), offline 本人確認.
//!
//! Sans-IO protocol code over the small [`CardTransport`] trait:
//! - [`apdu`], [`tlv`]: the APDU and BER-TLV codecs;
//! - [`reader`]: JPKI and 券面事項入力補助AP commands, with the guards that keep the My
//!   Number EF (and 照合番号A) from ever being selected;
//! - [`cert`], [`roots`]: the authentication certificate checked against the bundled
//!   J-LIS roots (plus configured test roots);
//! - [`basic4`]: the basic four items checked against DF32/DF33 (DF31 zeroised);
//! - [`verify`]: the whole flow with the PIN policy; [`compare`]: name / birth date
//!   comparison with the subject record;
//! - [`evidence`]: the registration statement the card signs and the pure check of a
//!   registration against its card evidence;
//! - [`testing`]: a scripted test transport.
//!
//! The PC/SC driver (`pcsc`) and the writing of registrations through the store
//! (`register`) are I/O and live in musubi-engine's `card` module, beside these.

pub mod apdu;
pub mod basic4;
pub mod cert;
pub mod compare;
pub mod evidence;
pub mod reader;
pub mod roots;
pub mod testing;
pub mod tlv;
pub mod transport;
pub mod verify;

pub use reader::{CardError, PinKind, PinStatus};
pub use transport::{CardTransport, TransportError};
pub use verify::{PinSource, Verified, VerifyError, VerifyOptions, verify_card};

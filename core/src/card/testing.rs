//! A **test transport**: replays a script of responses and records every command sent.
//! For unit tests of code that drives a [`CardTransport`] (e.g. the tablet app's UI
//! tests). It is not a card: it checks nothing and signs nothing. For a card that really
//! signs, use the in-process virtual card of the `musubi-vcard` crate.

use super::transport::{CardTransport, TransportError};
use std::collections::VecDeque;

/// One scripted step.
#[derive(Debug, Clone)]
pub struct Step {
    /// When set, the command must start with these bytes (else the transport fails).
    pub expect_prefix: Option<Vec<u8>>,
    /// The response (data + SW), or a transport error.
    pub reply: Result<Vec<u8>, TransportError>,
}

/// Test transport replaying [`Step`]s in order.
#[derive(Debug, Default)]
pub struct ScriptedTransport {
    script: VecDeque<Step>,
    /// Every command received, in order.
    pub sent: Vec<Vec<u8>>,
}

impl ScriptedTransport {
    /// An empty script.
    pub fn new() -> ScriptedTransport {
        ScriptedTransport::default()
    }

    /// Appends a reply to any command.
    pub fn reply(mut self, bytes: impl Into<Vec<u8>>) -> ScriptedTransport {
        self.script.push_back(Step {
            expect_prefix: None,
            reply: Ok(bytes.into()),
        });
        self
    }

    /// Appends a reply to a command that must start with `prefix`.
    pub fn expect(mut self, prefix: impl Into<Vec<u8>>, reply: impl Into<Vec<u8>>) -> Self {
        self.script.push_back(Step {
            expect_prefix: Some(prefix.into()),
            reply: Ok(reply.into()),
        });
        self
    }

    /// Appends a transport failure (e.g. [`TransportError::Removed`]).
    pub fn fail(mut self, err: TransportError) -> ScriptedTransport {
        self.script.push_back(Step {
            expect_prefix: None,
            reply: Err(err),
        });
        self
    }

    /// Steps not yet used.
    pub fn remaining(&self) -> usize {
        self.script.len()
    }
}

impl CardTransport for ScriptedTransport {
    fn transmit(&mut self, capdu: &[u8]) -> Result<Vec<u8>, TransportError> {
        self.sent.push(capdu.to_vec());
        let step = self
            .script
            .pop_front()
            .ok_or_else(|| TransportError::Other("test script exhausted".to_owned()))?;
        if let Some(p) = &step.expect_prefix
            && !capdu.starts_with(p)
        {
            return Err(TransportError::Other(
                "test script: unexpected command".to_owned(),
            ));
        }
        step.reply
    }
}

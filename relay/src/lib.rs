//! musubi relay.

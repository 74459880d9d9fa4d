//! JSON Pointers (RFC 6901), used to name fields in errors and in `musubi doc set`.

use std::fmt;

/// A parsed JSON Pointer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pointer(Vec<String>);

/// A string that is not a JSON Pointer.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PointerError {
    /// Does not start with `/`.
    #[error("a JSON pointer must be empty or start with '/'")]
    NoLeadingSlash,
    /// A `~` not followed by `0` or `1`.
    #[error("a JSON pointer may use '~' only as '~0' or '~1'")]
    BadEscape,
}

/// Escapes one reference token.
pub fn escape_token(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

impl Pointer {
    /// The empty pointer (the whole document).
    pub fn root() -> Self {
        Self::default()
    }

    /// Parses `"/a/b~1c"`.
    pub fn parse(s: &str) -> Result<Self, PointerError> {
        if s.is_empty() {
            return Ok(Self::root());
        }
        let rest = s.strip_prefix('/').ok_or(PointerError::NoLeadingSlash)?;
        let mut tokens = Vec::new();
        for raw in rest.split('/') {
            let mut out = String::with_capacity(raw.len());
            let mut chars = raw.chars();
            while let Some(c) = chars.next() {
                if c == '~' {
                    match chars.next() {
                        Some('0') => out.push('~'),
                        Some('1') => out.push('/'),
                        _ => return Err(PointerError::BadEscape),
                    }
                } else {
                    out.push(c);
                }
            }
            tokens.push(out);
        }
        Ok(Self(tokens))
    }

    /// The reference tokens.
    pub fn tokens(&self) -> &[String] {
        &self.0
    }

    /// A pointer one level deeper.
    pub fn child(&self, token: impl Into<String>) -> Self {
        let mut v = self.0.clone();
        v.push(token.into());
        Self(v)
    }

    /// Appends a token in place.
    pub fn push(&mut self, token: impl Into<String>) {
        self.0.push(token.into());
    }

    /// Removes the last token.
    pub fn pop(&mut self) -> Option<String> {
        self.0.pop()
    }

    /// Splits off the last token.
    pub fn split_last(&self) -> Option<(Pointer, &str)> {
        let (last, parent) = self.0.split_last()?;
        Some((Pointer(parent.to_vec()), last.as_str()))
    }
}

impl fmt::Display for Pointer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for t in &self.0 {
            write!(f, "/{}", escape_token(t))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_and_prints() {
        let p = Pointer::parse("/items/1-3").unwrap();
        assert_eq!(p.tokens(), ["items", "1-3"]);
        assert_eq!(p.to_string(), "/items/1-3");
        assert_eq!(
            Pointer::parse("/a~1b/c~0d").unwrap().tokens(),
            ["a/b", "c~d"]
        );
        assert_eq!(Pointer::parse("items"), Err(PointerError::NoLeadingSlash));
        assert_eq!(Pointer::parse("/a~2"), Err(PointerError::BadEscape));
        assert_eq!(Pointer::parse("").unwrap(), Pointer::root());
    }

    proptest! {
        #[test]
        fn display_round_trips(tokens in proptest::collection::vec(".*", 0..5)) {
            let p = Pointer(tokens);
            prop_assert_eq!(Pointer::parse(&p.to_string()).unwrap(), p);
        }

        #[test]
        fn parse_never_panics(s in ".*") {
            let _ = Pointer::parse(&s);
        }
    }
}

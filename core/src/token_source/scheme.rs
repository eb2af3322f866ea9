//! The access token, taken out of a `<scheme> <token>` header value (`authorization`).
//!
//! The rules and codes are the Auth0 quickstart's (`get_token_auth_header`), made strict
//! where the quickstart was lax: Envoy joins repeated headers with a comma, so a second
//! `authorization` header is an error, never "use the first".

use std::fmt;

use crate::error::AuthError;

/// A bearer token borrowed from the request. `Debug` never prints it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct AccessToken<'a>(pub(super) &'a str);

impl<'a> AccessToken<'a> {
    /// Extracts the token from every `authorization` value the request carried, in order.
    ///
    /// `max_len` caps the whole header value in bytes; longer values are refused before any
    /// parsing, so an oversized header costs nothing.
    pub fn from_header_values<I>(values: I, max_len: usize) -> Result<Self, AuthError>
    where
        I: IntoIterator<Item = &'a [u8]>,
    {
        Self::from_values_with_scheme(values, "bearer", max_len)
    }

    /// [`Self::from_header_values`] for a header whose scheme is `scheme` (compared
    /// case-insensitively).
    pub fn from_values_with_scheme<I>(
        values: I,
        scheme: &str,
        max_len: usize,
    ) -> Result<Self, AuthError>
    where
        I: IntoIterator<Item = &'a [u8]>,
    {
        let mut values = values.into_iter();
        let Some(value) = values.next() else {
            return Err(AuthError::MissingHeader);
        };
        if values.next().is_some() {
            // Two headers kept apart (Envoy's raw `header_map`): ambiguous, so refused.
            return Err(AuthError::TooManyParts);
        }
        Self::parse_with_scheme(value, scheme, max_len)
    }

    /// Parses one header value: `Bearer <token>`, scheme case-insensitive.
    pub fn parse(value: &'a [u8], max_len: usize) -> Result<Self, AuthError> {
        Self::parse_with_scheme(value, "bearer", max_len)
    }

    /// Parses one header value: `<scheme> <token>`, scheme case-insensitive.
    fn parse_with_scheme(value: &'a [u8], wanted: &str, max_len: usize) -> Result<Self, AuthError> {
        if value.len() > max_len {
            return Err(AuthError::BadHeaderValue);
        }
        // Only printable ASCII, space and tab are legal in a credential; anything else
        // (control characters, bytes Envoy replaced with `!`'s neighbours, non-UTF-8) is refused
        // before it reaches a decoder.
        if !value
            .iter()
            .all(|&b| b == b' ' || b == b'\t' || b.is_ascii_graphic())
        {
            return Err(AuthError::BadHeaderValue);
        }
        // invariant: every byte is ASCII, so this cannot fail.
        let value = std::str::from_utf8(value).map_err(|_| AuthError::BadHeaderValue)?;
        if value.is_empty() {
            return Err(AuthError::MissingHeader);
        }
        let mut parts = value.split_ascii_whitespace();
        let scheme = parts.next().ok_or(AuthError::NotBearer)?;
        if !scheme.eq_ignore_ascii_case(wanted) {
            return Err(AuthError::NotBearer);
        }
        let token = parts.next().ok_or(AuthError::NoToken)?;
        if parts.next().is_some() || token.contains(',') {
            return Err(AuthError::TooManyParts);
        }
        Ok(AccessToken(token))
    }

    /// The compact JWS serialization.
    pub fn as_str(&self) -> &'a str {
        self.0
    }
}

impl fmt::Debug for AccessToken<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessToken(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 8192;

    fn parse(v: &str) -> Result<&str, AuthError> {
        AccessToken::parse(v.as_bytes(), MAX).map(|t| t.as_str())
    }

    #[test]
    fn bearer_token_is_extracted() {
        assert_eq!(parse("Bearer a.b.c"), Ok("a.b.c"));
    }

    #[test]
    fn lowercase_and_uppercase_scheme_still_work() {
        assert_eq!(parse("bearer a.b.c"), Ok("a.b.c"));
        assert_eq!(parse("BEARER a.b.c"), Ok("a.b.c"));
    }

    #[test]
    fn surrounding_whitespace_is_tolerated() {
        assert_eq!(parse("  Bearer \t a.b.c  "), Ok("a.b.c"));
    }

    #[test]
    fn quickstart_rejections_keep_their_codes() {
        assert_eq!(parse(""), Err(AuthError::MissingHeader));
        assert_eq!(parse("Basic dXNlcjpwYXNz"), Err(AuthError::NotBearer));
        assert_eq!(parse("   "), Err(AuthError::NotBearer));
        assert_eq!(parse("Bearer"), Err(AuthError::NoToken));
        assert_eq!(parse("Bearer "), Err(AuthError::NoToken));
        assert_eq!(parse("Bearer a.b.c extra"), Err(AuthError::TooManyParts));
    }

    #[test]
    fn two_headers_joined_by_envoy_are_rejected() {
        assert_eq!(
            parse("Bearer a.b.c,Bearer d.e.f"),
            Err(AuthError::TooManyParts)
        );
        assert_eq!(parse("Bearer a.b.c,d.e.f"), Err(AuthError::TooManyParts));
    }

    #[test]
    fn two_raw_headers_are_rejected() {
        let values: [&[u8]; 2] = [b"Bearer a.b.c", b"Bearer a.b.c"];
        assert_eq!(
            AccessToken::from_header_values(values, MAX),
            Err(AuthError::TooManyParts)
        );
        let none: [&[u8]; 0] = [];
        assert_eq!(
            AccessToken::from_header_values(none, MAX),
            Err(AuthError::MissingHeader)
        );
    }

    #[test]
    fn control_characters_and_non_ascii_are_rejected() {
        assert_eq!(parse("Bearer a.b\0.c"), Err(AuthError::BadHeaderValue));
        assert_eq!(parse("Bearer a.b.c\r\n"), Err(AuthError::BadHeaderValue));
        assert_eq!(
            AccessToken::parse(b"Bearer a.\xff.c", MAX),
            Err(AuthError::BadHeaderValue)
        );
        assert_eq!(parse("Bearer a.é.c"), Err(AuthError::BadHeaderValue));
    }

    #[test]
    fn oversized_header_is_rejected() {
        let long = format!("Bearer {}", "a".repeat(MAX));
        assert_eq!(parse(&long), Err(AuthError::BadHeaderValue));
    }

    #[test]
    fn debug_never_prints_the_token() {
        let token = AccessToken::parse(b"Bearer secret.token.value", MAX).unwrap();
        assert_eq!(format!("{token:?}"), "AccessToken(..)");
    }

    mod proptests {
        use super::*;
        use proptest::prelude::*;

        /// The accepted grammar written out independently of the parser: at most `max`
        /// bytes, each visible ASCII, space or tab, forming exactly two blank-separated
        /// words, `bearer` in any case and a token without a comma.
        fn oracle(value: &[u8], max: usize) -> Option<&[u8]> {
            let legal = |b: &u8| *b == b' ' || *b == b'\t' || (0x21..=0x7e).contains(b);
            if value.len() > max || !value.iter().all(legal) {
                return None;
            }
            let words: Vec<&[u8]> = value
                .split(|b| *b == b' ' || *b == b'\t')
                .filter(|w| !w.is_empty())
                .collect();
            match words.as_slice() {
                [scheme, token]
                    if scheme.eq_ignore_ascii_case(b"bearer") && !token.contains(&b',') =>
                {
                    Some(token)
                }
                _ => None,
            }
        }

        /// Arbitrary bytes, and bytes assembled from the grammar's own pieces so that
        /// near-valid and valid shapes are common.
        fn header_value() -> impl Strategy<Value = Vec<u8>> {
            let piece = prop_oneof![
                Just(b"Bearer".to_vec()),
                Just(b"bEaReR".to_vec()),
                Just(b"Basic".to_vec()),
                Just(b" ".to_vec()),
                Just(b"\t".to_vec()),
                Just(b",".to_vec()),
                "[a-zA-Z0-9._~+/=-]{1,12}".prop_map(String::into_bytes),
                any::<u8>().prop_map(|b| vec![b]),
            ];
            prop_oneof![
                prop::collection::vec(any::<u8>(), 0..64),
                prop::collection::vec(piece, 0..8).prop_map(|parts| parts.concat()),
            ]
        }

        proptest! {
            #[test]
            fn parse_never_panics_and_follows_the_grammar(value in header_value(), max in 0usize..96) {
                let parsed = AccessToken::parse(&value, max).ok().map(|t| t.as_str().as_bytes());
                prop_assert_eq!(parsed, oracle(&value, max));
            }

            #[test]
            fn every_bearer_token_shape_is_accepted(
                scheme in "[bB][eE][aA][rR][eE][rR]",
                lead in "[ \t]{0,3}",
                gap in "[ \t]{1,3}",
                tail in "[ \t]{0,3}",
                token in "[!-+\\--~]{1,40}",
            ) {
                let value = format!("{lead}{scheme}{gap}{token}{tail}");
                let parsed = AccessToken::parse(value.as_bytes(), MAX).map(|t| t.as_str());
                prop_assert_eq!(parsed, Ok(token.as_str()));
            }

            #[test]
            fn two_or_more_header_values_are_never_accepted(
                values in prop::collection::vec(header_value(), 2..5),
            ) {
                let parsed = AccessToken::from_header_values(values.iter().map(Vec::as_slice), MAX);
                prop_assert_eq!(parsed, Err(AuthError::TooManyParts));
            }
        }
    }
}

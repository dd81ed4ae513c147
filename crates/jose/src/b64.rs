//! Canonical unpadded base64url (RFC 7515 §2, RFC 4648 §5). Anything else is refused: padding, the standard
//! alphabet's `+` and `/`, whitespace, and non-zero bits in the final symbol (so each byte string has exactly
//! one accepted encoding).

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;

const STRICT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(false),
);

/// Encodes bytes as unpadded base64url.
pub fn encode(bytes: &[u8]) -> String {
    STRICT.encode(bytes)
}

/// Appends the unpadded base64url encoding of `bytes` to `out`.
pub fn encode_into(bytes: &[u8], out: &mut String) {
    STRICT.encode_string(bytes, out);
}

/// Decodes canonical unpadded base64url; `None` for anything else.
pub fn decode(text: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4 + 3);
    decode_into(text, &mut out)?;
    Some(out)
}

/// Decodes canonical unpadded base64url, appending to `out`; `None` for anything else.
pub fn decode_into(text: &[u8], out: &mut Vec<u8>) -> Option<()> {
    // A length of 1 mod 4 cannot come from any byte string.
    if text.len() % 4 == 1 {
        return None;
    }
    STRICT.decode_vec(text, out).ok()
}

/// Decodes into a fixed-size buffer, refusing any other length.
pub fn decode_fixed<const N: usize>(text: &[u8]) -> Option<[u8; N]> {
    if text.len() != (N * 4).div_ceil(3) {
        return None;
    }
    let mut out = [0u8; N];
    match STRICT.decode_slice(text, &mut out) {
        Ok(n) if n == N => Some(out),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_non_canonical_forms() {
        for len in 0..40 {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let text = encode(&bytes);
            assert_eq!(decode(text.as_bytes()).as_deref(), Some(&bytes[..]));
        }
        assert!(decode(b"QQ==").is_none(), "padding");
        assert!(decode(b"QQ").is_some());
        assert!(decode(b"QR").is_none(), "non-zero trailing bits");
        assert!(decode(b"a+b/").is_none(), "standard alphabet");
        assert!(decode(b"QUJD RA").is_none(), "whitespace");
        assert!(decode(b"Q").is_none(), "impossible length");
        assert!(decode(b"QUJD\n").is_none(), "newline");
    }

    #[test]
    fn fixed_length_decoding_refuses_other_lengths() {
        assert_eq!(decode_fixed::<3>(b"QUJD"), Some(*b"ABC"));
        assert_eq!(decode_fixed::<2>(b"QUJD"), None);
        assert_eq!(decode_fixed::<4>(b"QUJD"), None);
    }
}

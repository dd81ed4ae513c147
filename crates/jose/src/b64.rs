//! Canonical unpadded base64url (RFC 7515 §2, RFC 4648 §5). Anything else is refused: padding, the standard
//! alphabet's `+` and `/`, whitespace, and non-zero bits in the final symbol (so each byte string has exactly
//! one accepted encoding).

use std::mem::MaybeUninit;

/// Encodes bytes as unpadded base64url.
pub fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    encode_into(bytes, &mut out);
    out
}

/// Appends the unpadded base64url encoding of `bytes` to `out` (SIMD where the CPU has it: encoding is a fixed
/// cost of every signature).
pub fn encode_into(bytes: &[u8], out: &mut String) {
    base64_simd::URL_SAFE_NO_PAD.encode_append(bytes, out);
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
    // SIMD where the CPU has it: decoding is a fixed cost of every verification.
    base64_simd::URL_SAFE_NO_PAD.decode_append(text, out).ok()?;
    Some(())
}

/// Decodes canonical unpadded base64url into the front of `out` (which need not be initialised: a stack buffer
/// costs no clearing); `None` for anything else, or when the bytes would not fit.
pub fn decode_to_slice<'o>(text: &[u8], out: &'o mut [MaybeUninit<u8>]) -> Option<&'o [u8]> {
    let len = text.len();
    // A length of 1 mod 4 cannot come from any byte string.
    if len % 4 == 1 {
        return None;
    }
    let decoded = len / 4 * 3 + (len % 4).saturating_sub(1);
    let out = out.get_mut(..decoded)?;
    let bytes = base64_simd::URL_SAFE_NO_PAD.decode(text, base64_simd::Out::from_uninit_slice(out)).ok()?;
    Some(bytes)
}

/// Decodes into a fixed-size buffer, refusing any other length.
pub fn decode_fixed<const N: usize>(text: &[u8]) -> Option<[u8; N]> {
    if text.len() != (N * 4).div_ceil(3) {
        return None;
    }
    let mut out = [0u8; N];
    let n = base64_simd::URL_SAFE_NO_PAD.decode(text, base64_simd::Out::from_slice(&mut out)).ok()?.len();
    (n == N).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
    use base64::engine::DecodePaddingMode;
    use base64::Engine as _;

    /// The `base64` crate's strictest engine, as a reference.
    const STRICT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        GeneralPurposeConfig::new()
            .with_encode_padding(false)
            .with_decode_padding_mode(DecodePaddingMode::RequireNone)
            .with_decode_allow_trailing_bits(false),
    );

    #[test]
    fn round_trips_and_refuses_non_canonical_forms() {
        for len in 0..40 {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let text = encode(&bytes);
            assert_eq!(decode(text.as_bytes()).as_deref(), Some(&bytes[..]));
            let mut buf = [MaybeUninit::uninit(); 32];
            let fits = decode_to_slice(text.as_bytes(), &mut buf).map(<[u8]>::to_vec);
            assert_eq!(fits, (len <= 32).then(|| bytes.clone()), "{len}");
        }
        for bad in [&b"QQ=="[..], b"QR", b"a+b/", b"QUJD RA", b"Q", b"QUJD\n"] {
            assert_eq!(decode_to_slice(bad, &mut [MaybeUninit::uninit(); 8]), None, "{bad:?}");
        }
        assert!(decode(b"QQ==").is_none(), "padding");
        assert!(decode(b"QQ").is_some());
        assert!(decode(b"QR").is_none(), "non-zero trailing bits");
        assert!(decode(b"a+b/").is_none(), "standard alphabet");
        assert!(decode(b"QUJD RA").is_none(), "whitespace");
        assert!(decode(b"Q").is_none(), "impossible length");
        assert!(decode(b"QUJD\n").is_none(), "newline");
    }

    /// The SIMD decoder agrees with the strict scalar engine on every text of up to three symbols over the
    /// alphabet and a few bytes beside it (so on every tail a longer text can end in), and on longer texts.
    #[test]
    fn decoding_agrees_with_the_strict_engine() {
        let symbols: Vec<u8> = (b'A'..=b'Z').chain(b'a'..=b'z').chain(b'0'..=b'9').chain(*b"-_+/= .").collect();
        let mut texts: Vec<Vec<u8>> = vec![Vec::new()];
        for len in 1..=3 {
            let shorter: Vec<Vec<u8>> = texts.iter().filter(|t| t.len() == len - 1).cloned().collect();
            for t in shorter {
                for &c in &symbols {
                    texts.push([t.as_slice(), &[c]].concat());
                }
            }
        }
        let long = encode(&(0..=255u8).collect::<Vec<_>>());
        for text in texts.iter().map(|t| [long.as_bytes(), t].concat()).chain(texts.iter().cloned()) {
            let strict = if text.len() % 4 == 1 { None } else { STRICT.decode(&text).ok() };
            assert_eq!(decode(&text), strict, "{:?}", String::from_utf8_lossy(&text));
            if let Some(bytes) = &strict {
                assert_eq!(encode(bytes), STRICT.encode(bytes));
                if bytes.len() == 2 {
                    assert_eq!(decode_fixed::<2>(&text).map(Vec::from), strict);
                }
            }
        }
    }

    #[test]
    fn fixed_length_decoding_refuses_other_lengths() {
        assert_eq!(decode_fixed::<3>(b"QUJD"), Some(*b"ABC"));
        assert_eq!(decode_fixed::<2>(b"QUJD"), None);
        assert_eq!(decode_fixed::<4>(b"QUJD"), None);
    }
}

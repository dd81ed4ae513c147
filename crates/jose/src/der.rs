//! Just enough DER to read the components of an RSA private key out of the PKCS#8 document the backend
//! exports (RFC 5208 `PrivateKeyInfo` wrapping RFC 8017 `RSAPrivateKey`). Input is our own backend's
//! output, but the reader still checks every length.

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn tlv(&mut self, tag: u8) -> Option<&'a [u8]> {
        let (&t, rest) = self.0.split_first()?;
        if t != tag {
            return None;
        }
        let (&first, mut rest) = rest.split_first()?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || rest.len() < n {
                return None;
            }
            let len = rest[..n].iter().fold(0usize, |v, &b| v << 8 | usize::from(b));
            rest = &rest[n..];
            len
        };
        if rest.len() < len {
            return None;
        }
        let (value, tail) = rest.split_at(len);
        self.0 = tail;
        Some(value)
    }

    /// An unsigned INTEGER, without the sign byte.
    fn uint(&mut self) -> Option<&'a [u8]> {
        let v = self.tlv(0x02)?;
        match v {
            [0, rest @ ..] if !rest.is_empty() => Some(rest),
            _ => Some(v),
        }
    }
}

/// `[d, p, q, dp, dq, qi]` from a PKCS#8 RSA private key.
pub(crate) fn rsa_private_from_pkcs8(pkcs8: &[u8]) -> Option<[&[u8]; 6]> {
    let mut outer = Reader(Reader(pkcs8).tlv(0x30)?);
    outer.uint()?; // version
    outer.tlv(0x30)?; // algorithm identifier
    let mut key = Reader(Reader(outer.tlv(0x04)?).tlv(0x30)?);
    key.uint()?; // version
    key.uint()?; // n
    key.uint()?; // e
    Some([key.uint()?, key.uint()?, key.uint()?, key.uint()?, key.uint()?, key.uint()?])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_truncated_and_mistagged_input() {
        assert!(rsa_private_from_pkcs8(&[]).is_none());
        assert!(rsa_private_from_pkcs8(&[0x30, 0x05, 0x02, 0x01]).is_none());
        assert!(rsa_private_from_pkcs8(&[0x31, 0x00]).is_none());
        assert!(rsa_private_from_pkcs8(&[0x30, 0x85, 0, 0, 0, 0, 0]).is_none());
    }
}

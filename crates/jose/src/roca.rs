//! Detection of RSA moduli made by the flawed Infineon generator (ROCA, CVE-2017-15361; Nemec et al., CCS
//! 2017). Such a modulus is, for every small prime `p` below, congruent to an element of the subgroup that
//! 65537 generates modulo `p`. A random modulus passes all 38 tests with negligible probability.

const PRIMES: [u32; 38] = [
    3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89, 97, 101, 103, 107, 109,
    113, 127, 131, 137, 139, 149, 151, 157, 163, 167,
];

/// True when the big-endian modulus `n` carries the ROCA fingerprint.
pub(crate) fn is_vulnerable(n: &[u8]) -> bool {
    PRIMES.iter().all(|&p| {
        let residue = n.iter().fold(0u32, |r, &b| (r * 256 + u32::from(b)) % p);
        in_subgroup_of_65537(residue, p)
    })
}

fn in_subgroup_of_65537(residue: u32, p: u32) -> bool {
    let g = 65537 % p;
    let mut x = 1;
    // The subgroup has at most p - 1 elements.
    for _ in 0..p {
        if x == residue {
            return true;
        }
        x = x * g % p;
        if x == 1 {
            break;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subgroups_match_the_published_fingerprints() {
        // The published detector's bit masks for the first primes: 6, 30, 126, 1026, 5658.
        for (p, mask) in [(3u32, 6u64), (5, 30), (7, 126), (11, 1026), (13, 5658)] {
            let ours: u64 = (0..p).filter(|&r| in_subgroup_of_65537(r, p)).map(|r| 1u64 << r).sum();
            assert_eq!(ours, mask, "p = {p}");
        }
        assert!(!is_vulnerable(&[0xC5; 256]));
    }
}

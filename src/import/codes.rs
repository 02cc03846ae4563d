//! DNS list answer patterns as Postfix writes them (`127.0.0.[2..11]`,
//! `127.0.0.[2;4;10..11]`) and as sendmail's enhdnsbl does (`127.0.0.2.`,
//! `127.0.0.$-.`), turned into mxguard's `codes` (`"127.0.0.2-127.0.0.11"`).

/// One octet's values: sorted, disjoint, inclusive ranges.
type Octet = Vec<(u8, u8)>;

/// More ranges than this is no longer a translation anyone can read
/// (DNSWL's `127.0.[0..255].[1..3]` makes 256).
const MAX_RANGES: usize = 256;

/// The ranges of a Postfix `d.d.d.d` pattern, where each `d` is a number
/// or `[…]` holding `;`-separated numbers and `n..m` ranges.
pub fn postfix(pattern: &str) -> Option<Vec<String>> {
    let parts: Vec<&str> = pattern.split('.').collect();
    // `[1..3]` holds dots: join the pieces of each bracket back.
    let mut octets = Vec::new();
    let mut pending: Option<String> = None;
    for part in parts {
        match pending.take() {
            Some(mut open) => {
                open.push('.');
                open.push_str(part);
                if open.contains(']') {
                    octets.push(postfix_octet(&open)?);
                } else {
                    pending = Some(open);
                }
            }
            None if part.starts_with('[') && !part.contains(']') => {
                pending = Some(part.to_string());
            }
            None => octets.push(postfix_octet(part)?),
        }
    }
    if pending.is_some() {
        return None;
    }
    ranges(&octets)
}

fn postfix_octet(text: &str) -> Option<Octet> {
    let Some(inner) = text.strip_prefix('[') else {
        let n = number(text)?;
        return Some(vec![(n, n)]);
    };
    let inner = inner.strip_suffix(']')?;
    let mut values = Vec::new();
    for item in inner.split(';') {
        match item.split_once("..") {
            Some((a, b)) => {
                let (a, b) = (number(a)?, number(b)?);
                if a > b {
                    return None;
                }
                values.push((a, b));
            }
            None => {
                let n = number(item)?;
                values.push((n, n));
            }
        }
    }
    Some(normalise(values))
}

/// The ranges of a sendmail enhdnsbl return value: `127.0.0.2.` (the
/// trailing dot is the map's), where `$-` is any one octet and a final
/// `$+` or `$*` any remaining ones.
pub fn sendmail(pattern: &str) -> Option<Vec<String>> {
    let pattern = pattern.trim();
    let pattern = pattern.strip_suffix('.').unwrap_or(pattern);
    let parts: Vec<&str> = pattern.split('.').collect();
    let mut octets = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        match *part {
            "$-" => octets.push(vec![(0, 255)]),
            "$+" | "$*" if last => {
                let least = usize::from(*part == "$+");
                if octets.len() + least > 4 {
                    return None;
                }
                while octets.len() < 4 {
                    octets.push(vec![(0, 255)]);
                }
            }
            text => {
                let n = number(text)?;
                octets.push(vec![(n, n)]);
            }
        }
    }
    ranges(&octets)
}

fn number(text: &str) -> Option<u8> {
    if text.is_empty() || text.len() > 3 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn normalise(mut values: Octet) -> Octet {
    values.sort_unstable();
    let mut merged: Octet = Vec::new();
    for (a, b) in values {
        match merged.last_mut() {
            Some(last) if u16::from(a) <= u16::from(last.1) + 1 => last.1 = last.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    merged
}

/// The address ranges four octet sets make, or `None` for anything but
/// four octets or too many ranges.
fn ranges(octets: &[Octet]) -> Option<Vec<String>> {
    if octets.len() != 4 {
        return None;
    }
    let mut out = Vec::new();
    if !collect(0, octets, &mut out) {
        return None;
    }
    Some(
        out.into_iter()
            .map(|(lo, hi)| {
                let (lo, hi) = (std::net::Ipv4Addr::from(lo), std::net::Ipv4Addr::from(hi));
                if lo == hi {
                    lo.to_string()
                } else {
                    format!("{lo}-{hi}")
                }
            })
            .collect(),
    )
}

/// Adds the ranges under `prefix` for the remaining `octets`, in order,
/// merging neighbours; false once there are too many.
fn collect(prefix: u32, octets: &[Octet], out: &mut Vec<(u32, u32)>) -> bool {
    let Some((first, rest)) = octets.split_first() else {
        return push(out, prefix, prefix);
    };
    let shift = 8 * rest.len() as u32;
    let low_bits = if shift == 0 { 0 } else { (1u32 << shift) - 1 };
    let rest_full = rest.iter().all(|o| o.as_slice() == [(0, 255)]);
    for &(a, b) in first {
        if rest_full {
            let lo = prefix | u32::from(a) << shift;
            let hi = prefix | u32::from(b) << shift | low_bits;
            if !push(out, lo, hi) {
                return false;
            }
        } else {
            for v in a..=b {
                if !collect(prefix | u32::from(v) << shift, rest, out) {
                    return false;
                }
            }
        }
    }
    true
}

fn push(out: &mut Vec<(u32, u32)>, lo: u32, hi: u32) -> bool {
    match out.last_mut() {
        Some(last) if last.1.checked_add(1) == Some(lo) => last.1 = hi,
        _ => out.push((lo, hi)),
    }
    out.len() <= MAX_RANGES
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(items: &[&str]) -> Option<Vec<String>> {
        Some(items.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn postfix_patterns() {
        assert_eq!(postfix("127.0.0.2"), v(&["127.0.0.2"]));
        assert_eq!(postfix("127.0.0.[2..11]"), v(&["127.0.0.2-127.0.0.11"]));
        assert_eq!(
            postfix("127.0.0.[2;4;10..11]"),
            v(&["127.0.0.2", "127.0.0.4", "127.0.0.10-127.0.0.11"])
        );
        assert_eq!(
            postfix("127.0.[0..255].[0..255]"),
            v(&["127.0.0.0-127.0.255.255"])
        );
        assert_eq!(
            postfix("127.0.[0..1].[1..3]"),
            v(&["127.0.0.1-127.0.0.3", "127.0.1.1-127.0.1.3"])
        );
        assert_eq!(postfix("127.0.0.[3;2]"), v(&["127.0.0.2-127.0.0.3"]));
        for bad in [
            "127.0.0",
            "127.0.0.256",
            "127.0.0.[2..]",
            "127.0.0.[5..2]",
            "127.0.0.[2",
            "a.b.c.d",
            "[0..255].[0..255].[0..255].2",
            "",
        ] {
            assert_eq!(postfix(bad), None, "{bad}");
        }
    }

    #[test]
    fn sendmail_patterns() {
        assert_eq!(sendmail("127.0.0.2."), v(&["127.0.0.2"]));
        assert_eq!(sendmail("127.0.0.$-."), v(&["127.0.0.0-127.0.0.255"]));
        assert_eq!(sendmail("127.0.$+"), v(&["127.0.0.0-127.0.255.255"]));
        assert_eq!(sendmail("127.0.0.3.$*"), v(&["127.0.0.3"]));
        for bad in ["127.0.0.2.$+", "127.$+.0.2.", "127.0.0.", "x", "1.2.3.4.5."] {
            assert_eq!(sendmail(bad), None, "{bad}");
        }
    }
}

//! Reverse DNS checks on the client address: no PTR record
//! (`reverse_dns`), a PTR name that does not resolve back to the address
//! (`forged_reverse_dns`, forward-confirmed reverse DNS), and PTR names
//! that look generic or dynamic (`generic_reverse_dns`).

use std::net::IpAddr;

/// Whether a PTR name carries the client's address, as ISPs' generic
/// names do (`ip-192-0-2-1.isp.example`, `1.2.0.192.dyn.example`,
/// `c0000201.example`).
pub fn looks_generic(ptr: &str, client: IpAddr) -> bool {
    let IpAddr::V4(v4) = client else {
        return false;
    };
    let name = ptr.to_ascii_lowercase();
    let o = v4.octets().map(|b| b.to_string());
    let reversed = [o[3].clone(), o[2].clone(), o[1].clone(), o[0].clone()];
    let with_sep = |parts: &[String], sep: &str| parts.join(sep);
    ["-", ".", "_"]
        .iter()
        .flat_map(|sep| [with_sep(&o, sep), with_sep(&reversed, sep)])
        .chain([format!("{:08x}", u32::from(v4))])
        .any(|form| contains_delimited(&name, &form))
}

/// `needle` occurs in `hay` not glued to more digits on either side.
fn contains_delimited(hay: &str, needle: &str) -> bool {
    hay.match_indices(needle).any(|(i, _)| {
        let before = hay[..i].chars().next_back();
        let after = hay[i + needle.len()..].chars().next();
        !before.is_some_and(|c| c.is_ascii_digit()) && !after.is_some_and(|c| c.is_ascii_digit())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generic(name: &str) -> bool {
        looks_generic(name, "192.0.2.1".parse().unwrap())
    }

    #[test]
    fn generic_names() {
        assert!(generic("ip-192-0-2-1.isp.example"));
        assert!(generic("1.2.0.192.dyn.isp.example"));
        assert!(generic("c0000201.cable.example"));
        assert!(generic("host192_0_2_1.example"));
        assert!(!generic("mail.example.com"));
        assert!(!generic("ip-192-0-2-11.isp.example"), "another address");
        assert!(!looks_generic(
            "ip-192-0-2-1.example",
            "2001:db8::1".parse().unwrap()
        ));
    }
}

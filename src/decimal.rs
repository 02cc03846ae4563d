//! Integers as decimal text without the formatting machinery: reply
//! codes and address octets, written on every reply and log line.

/// An unsigned integer's decimal digits, held on the stack.
pub struct Decimal {
    digits: [u8; 20],
    at: usize,
}

impl Decimal {
    pub fn of(value: u64) -> Decimal {
        let (mut digits, mut rest, mut at) = ([0u8; 20], value, 20);
        loop {
            at -= 1;
            digits[at] = b'0' + (rest % 10) as u8;
            rest /= 10;
            if rest == 0 {
                break;
            }
        }
        Decimal { digits, at }
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }

    /// The digits as bytes, for text assembled in a buffer of its own.
    pub fn as_bytes(&self) -> &[u8] {
        &self.digits[self.at..]
    }
}

#[cfg(test)]
mod tests {
    use super::Decimal;

    #[test]
    fn digits_are_those_display_writes() {
        for value in (0..=1000).chain([65_535, 4_294_967_296, u64::MAX]) {
            assert_eq!(Decimal::of(value).as_str(), value.to_string());
        }
    }
}

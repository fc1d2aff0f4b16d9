//! Whether a decimal number written in JSON or TOML overflows a double, decided from its
//! digits. Both formats refuse a number that rounds to infinity (as serde_json and the `toml`
//! crate do), and that is the only thing we need of a number's value: parsing it as `f64`
//! would link the float parser and its tables (about 15 KB) into every initramfs.

/// The smallest value that rounds to infinity: halfway between `f64::MAX` and 2^1024
/// (2^1024 - 2^970; a tie rounds to the even mantissa, which is 2^1024), as decimal digits.
const OVERFLOW: &[u8] = b"179769313486231580793728971405303415079934132710037826936173778980444968292764750946649017977587207096330286416692887910946555547851940402630657488671505820681908902000708383676273854845817711531764475730270069855571366959622842914819860834936475292719074168444365510704342711559699508093042880177904174497792";

/// For `[+-]digits[.digits][(e|E)[+-]digits]` (a `.` with digits on either side, as the
/// callers have checked), whether the value rounds to infinity as a double. `None` when
/// `text` is not of that form.
pub fn overflows_f64(text: &str) -> Option<bool> {
    let bytes = text.as_bytes();
    let mut i = usize::from(matches!(bytes.first(), Some(b'+' | b'-')));
    let mut digits: Vec<u8> = Vec::new();
    // Decimal exponent of the first digit written, counting from the point.
    let mut int_len: i64 = 0;
    let mut seen_digit = false;
    while let Some(&b) = bytes.get(i) {
        if !b.is_ascii_digit() {
            break;
        }
        digits.push(b);
        int_len += 1;
        seen_digit = true;
        i += 1;
    }
    if bytes.get(i) == Some(&b'.') {
        i += 1;
        while let Some(&b) = bytes.get(i) {
            if !b.is_ascii_digit() {
                break;
            }
            digits.push(b);
            seen_digit = true;
            i += 1;
        }
    }
    if !seen_digit {
        return None;
    }
    let mut exponent: i64 = 0;
    if matches!(bytes.get(i), Some(b'e' | b'E')) {
        i += 1;
        let negative = bytes.get(i) == Some(&b'-');
        if matches!(bytes.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let start = i;
        while let Some(&b) = bytes.get(i) {
            if !b.is_ascii_digit() {
                break;
            }
            // Saturate: anything past a million digits of exponent is decided already.
            exponent = (exponent * 10 + i64::from(b - b'0')).min(1_000_000_000);
            i += 1;
        }
        if i == start {
            return None;
        }
        if negative {
            exponent = -exponent;
        }
    }
    if i != bytes.len() {
        return None;
    }
    // value = 0.d1d2d3... x 10^magnitude, with d1 the first non-zero digit.
    let Some(first) = digits.iter().position(|&d| d != b'0') else {
        return Some(false); // zero
    };
    let magnitude = int_len - first as i64 + exponent;
    let significant = digits.get(first..).unwrap_or(&[]);
    let limit = OVERFLOW.len() as i64;
    Some(match magnitude.cmp(&limit) {
        std::cmp::Ordering::Less => false,
        std::cmp::Ordering::Greater => true,
        // Same number of integer digits: compare digit by digit (missing digits are zeros).
        std::cmp::Ordering::Equal => {
            let mut ours = significant.iter().copied().chain(std::iter::repeat(b'0'));
            let mut result = true; // equal to the limit: rounds to infinity
            for &limit_digit in OVERFLOW {
                let d = ours.next().unwrap_or(b'0');
                if d != limit_digit {
                    result = d > limit_digit;
                    break;
                }
            }
            result
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agrees_with_the_float_parser() {
        let limit = std::str::from_utf8(OVERFLOW).unwrap();
        let below = format!("{}1", &limit[..limit.len() - 1].to_string());
        let cases = [
            "0",
            "-0",
            "1",
            "1.5",
            "0.000",
            "1e308",
            "1.7976931348623157e308",
            "1.7976931348623158e308",
            "1.79769313486231580793e308",
            "1.7976931348623159e308",
            "2e308",
            "1e309",
            "-1e400",
            "1e-400",
            "0e99999999999",
            "0.0001e312",
            "100000000000000000000e289",
            "1e99999999999999999999",
            "17976931348623158e292",
            limit,
            &below,
        ];
        for text in cases {
            let parsed: f64 = text.parse().unwrap();
            assert_eq!(overflows_f64(text), Some(parsed.is_infinite()), "{text}");
        }
        // Exactly at the tie, and a hair below it.
        let tie = format!("{limit}.0");
        assert_eq!(overflows_f64(&tie), Some(true));
        let just_below = format!("{}.9999", &limit[..limit.len() - 1]);
        assert_eq!(overflows_f64(&just_below), Some(false));
        for bad in [
            "", "-", "e5", "1e", "1e+", "abc", "1.2.3", "inf", "nan", "1x",
        ] {
            assert_eq!(overflows_f64(bad), None, "{bad:?}");
        }
    }
}

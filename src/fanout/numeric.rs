//! PostgreSQL `numeric` as text, exactly: parsing what `numeric_out` prints, ordering, adding
//! partial sums, and the division `avg` ends with, at the scale PostgreSQL's own
//! `select_div_scale` picks, so the merged text is the text PostgreSQL would print.

use std::cmp::Ordering;

/// PostgreSQL keeps numerics in base-10000 digits; the division scale is chosen from them.
const DEC_DIGITS: i64 = 4;
const NUMERIC_MIN_SIG_DIGITS: i64 = 16;
const NUMERIC_MAX_DISPLAY_SCALE: i64 = 1000;

/// A finite decimal: `digits` (most significant first, no leading zeros; empty for zero) times
/// 10^-`scale`. The scale is the display scale: "1.50" has scale 2.
#[derive(Debug, Clone)]
pub struct Decimal {
    negative: bool,
    digits: Vec<u8>,
    scale: u32,
}

/// A numeric value with PostgreSQL's special values, ordered as PostgreSQL orders them:
/// -Infinity < every finite value < Infinity < NaN.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Numeric {
    NegInfinity,
    Finite(Decimal),
    Infinity,
    NaN,
}

impl Numeric {
    /// Parses the text `numeric_out` prints (no exponents); None for anything else.
    pub fn parse(text: &str) -> Option<Numeric> {
        match text {
            "NaN" => Some(Numeric::NaN),
            "Infinity" => Some(Numeric::Infinity),
            "-Infinity" => Some(Numeric::NegInfinity),
            _ => Decimal::parse(text).map(Numeric::Finite),
        }
    }

    /// The sum of two partial sums, as PostgreSQL's numeric addition treats special values.
    pub fn add(&self, other: &Numeric) -> Numeric {
        use Numeric::*;
        match (self, other) {
            (NaN, _) | (_, NaN) | (Infinity, NegInfinity) | (NegInfinity, Infinity) => NaN,
            (Infinity, _) | (_, Infinity) => Infinity,
            (NegInfinity, _) | (_, NegInfinity) => NegInfinity,
            (Finite(a), Finite(b)) => Finite(a.add(b)),
        }
    }

    /// `sum / count` as PostgreSQL's `numeric_div` computes it (count > 0).
    pub fn div_count(&self, count: u64) -> Numeric {
        match self {
            Numeric::Finite(sum) => Numeric::Finite(sum.div_count(count)),
            special => special.clone(),
        }
    }

    pub fn to_text(&self) -> String {
        match self {
            Numeric::NaN => "NaN".into(),
            Numeric::Infinity => "Infinity".into(),
            Numeric::NegInfinity => "-Infinity".into(),
            Numeric::Finite(d) => d.to_text(),
        }
    }
}

impl Decimal {
    fn parse(text: &str) -> Option<Decimal> {
        let (negative, unsigned) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (whole, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
        let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() || !all_digits(whole) || !all_digits(fraction) {
            return None;
        }
        let digits: Vec<u8> = whole
            .bytes()
            .chain(fraction.bytes())
            .map(|b| b - b'0')
            .collect();
        let scale = u32::try_from(fraction.len()).ok()?;
        Some(Decimal::new(negative, digits, scale))
    }

    pub fn from_u64(value: u64) -> Decimal {
        let digits = value.to_string().bytes().map(|b| b - b'0').collect();
        Decimal::new(false, digits, 0)
    }

    /// Normalises: no leading zeros, and zero is never negative.
    fn new(negative: bool, mut digits: Vec<u8>, scale: u32) -> Decimal {
        let leading = digits.iter().take_while(|&&d| d == 0).count();
        digits.drain(..leading);
        Decimal {
            negative: negative && !digits.is_empty(),
            digits,
            scale,
        }
    }

    /// The magnitude's digits at `scale` (>= self.scale), zeros appended.
    fn digits_at(&self, scale: u32) -> Vec<u8> {
        let mut digits = self.digits.clone();
        digits.resize(digits.len() + (scale - self.scale) as usize, 0);
        digits
    }

    fn add(&self, other: &Decimal) -> Decimal {
        let scale = self.scale.max(other.scale);
        let (a, b) = (self.digits_at(scale), other.digits_at(scale));
        if self.negative == other.negative {
            return Decimal::new(self.negative, add_magnitudes(&a, &b), scale);
        }
        match compare_magnitudes(&a, &b) {
            Ordering::Less => Decimal::new(other.negative, subtract_magnitudes(&b, &a), scale),
            _ => Decimal::new(self.negative, subtract_magnitudes(&a, &b), scale),
        }
    }

    /// The quotient rounded half away from zero at the scale `select_div_scale` picks.
    fn div_count(&self, count: u64) -> Decimal {
        let divisor = Decimal::from_u64(count);
        let rscale = select_div_scale(self, &divisor);
        // One digit more than needed, then round on it.
        let dividend = self.digits_at(rscale + 1);
        let (mut quotient, remainder) = divide_magnitude(&dividend, u128::from(count) * 10);
        if remainder * 2 >= u128::from(count) * 10 {
            quotient = add_magnitudes(&quotient, &[1]);
        }
        Decimal::new(self.negative, quotient, rscale)
    }

    /// Base-10000 weight and first digit of the value, as PostgreSQL's normalised NumericVar
    /// has them (0 and 0 for zero).
    fn base_10000_head(&self) -> (i64, u32) {
        if self.digits.is_empty() {
            return (0, 0);
        }
        // Decimal exponent of the leading digit, then the group it falls in.
        let exponent = self.digits.len() as i64 - 1 - i64::from(self.scale);
        let weight = exponent.div_euclid(DEC_DIGITS);
        let group_low = weight * DEC_DIGITS;
        let first = (group_low..group_low + DEC_DIGITS)
            .rev()
            .fold(0u32, |acc, place| {
                acc * 10 + u32::from(self.digit_at_place(place))
            });
        (weight, first)
    }

    /// The digit at decimal place 10^place.
    fn digit_at_place(&self, place: i64) -> u8 {
        let from_end = place + i64::from(self.scale);
        let len = self.digits.len() as i64;
        if from_end < 0 || from_end >= len {
            return 0;
        }
        self.digits[(len - 1 - from_end) as usize]
    }

    fn to_text(&self) -> String {
        let scale = self.scale as usize;
        let mut digits: String = self.digits.iter().map(|d| char::from(b'0' + d)).collect();
        if digits.len() <= scale {
            digits.insert_str(0, &"0".repeat(scale + 1 - digits.len()));
        }
        if scale > 0 {
            digits.insert(digits.len() - scale, '.');
        }
        if self.negative {
            digits.insert(0, '-');
        }
        digits
    }
}

impl Ord for Decimal {
    fn cmp(&self, other: &Decimal) -> Ordering {
        match (self.negative, other.negative) {
            (false, true) => return Ordering::Greater,
            (true, false) => return Ordering::Less,
            _ => {}
        }
        let scale = self.scale.max(other.scale);
        let magnitude = compare_magnitudes(&self.digits_at(scale), &other.digits_at(scale));
        if self.negative {
            magnitude.reverse()
        } else {
            magnitude
        }
    }
}

impl PartialOrd for Decimal {
    fn partial_cmp(&self, other: &Decimal) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Equal by value: 1.0 equals 1.00, as in PostgreSQL.
impl PartialEq for Decimal {
    fn eq(&self, other: &Decimal) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Decimal {}

/// PostgreSQL's `select_div_scale` (src/backend/utils/adt/numeric.c).
fn select_div_scale(dividend: &Decimal, divisor: &Decimal) -> u32 {
    let (weight1, first1) = dividend.base_10000_head();
    let (weight2, first2) = divisor.base_10000_head();
    let mut qweight = weight1 - weight2;
    if first1 <= first2 {
        qweight -= 1;
    }
    let rscale = (NUMERIC_MIN_SIG_DIGITS - qweight * DEC_DIGITS)
        .max(i64::from(dividend.scale))
        .max(i64::from(divisor.scale))
        .clamp(0, NUMERIC_MAX_DISPLAY_SCALE);
    rscale as u32
}

/// Compares magnitudes without leading zeros... or with: shorter after stripping is smaller.
fn compare_magnitudes(a: &[u8], b: &[u8]) -> Ordering {
    let strip = |d: &[u8]| -> usize { d.iter().take_while(|&&x| x == 0).count() };
    let (a, b) = (&a[strip(a)..], &b[strip(b)..]);
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

fn add_magnitudes(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut sum = Vec::with_capacity(a.len().max(b.len()) + 1);
    let (mut ia, mut ib, mut carry) = (a.iter().rev(), b.iter().rev(), 0u8);
    loop {
        let (da, db) = (ia.next(), ib.next());
        if da.is_none() && db.is_none() {
            break;
        }
        let total = da.copied().unwrap_or(0) + db.copied().unwrap_or(0) + carry;
        sum.push(total % 10);
        carry = total / 10;
    }
    if carry > 0 {
        sum.push(carry);
    }
    sum.reverse();
    sum
}

/// a - b for a >= b.
fn subtract_magnitudes(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut difference = Vec::with_capacity(a.len());
    let (mut ib, mut borrow) = (b.iter().rev(), 0i8);
    for &da in a.iter().rev() {
        let mut d = da as i8 - ib.next().copied().unwrap_or(0) as i8 - borrow;
        borrow = i8::from(d < 0);
        if d < 0 {
            d += 10;
        }
        difference.push(d as u8);
    }
    difference.reverse();
    difference
}

/// Long division of a decimal magnitude by a small divisor: quotient digits and remainder.
fn divide_magnitude(dividend: &[u8], divisor: u128) -> (Vec<u8>, u128) {
    let mut quotient = Vec::with_capacity(dividend.len());
    let mut remainder = 0u128;
    for &digit in dividend {
        remainder = remainder * 10 + u128::from(digit);
        quotient.push((remainder / divisor) as u8);
        remainder %= divisor;
    }
    (quotient, remainder)
}

/// PostgreSQL's sign words in `numeric_send`'s format.
const NUMERIC_POS: u16 = 0x0000;
const NUMERIC_NEG: u16 = 0x4000;
const NUMERIC_NAN: u16 = 0xC000;
const NUMERIC_PINF: u16 = 0xD000;
const NUMERIC_NINF: u16 = 0xF000;

impl Numeric {
    /// The value in `numeric_send`'s binary format: digit count, weight of the first
    /// base-10000 digit, sign, display scale, then the digits without leading or trailing
    /// zero digits (as PostgreSQL stores them). None beyond numeric's own range.
    pub fn to_binary(&self) -> Option<Vec<u8>> {
        let (sign, groups, weight, scale) = match self {
            Numeric::NaN => (NUMERIC_NAN, Vec::new(), 0, 0),
            Numeric::Infinity => (NUMERIC_PINF, Vec::new(), 0, 0),
            Numeric::NegInfinity => (NUMERIC_NINF, Vec::new(), 0, 0),
            Numeric::Finite(decimal) => decimal.base_10000()?,
        };
        let mut out = Vec::with_capacity(8 + 2 * groups.len());
        out.extend_from_slice(&i16::try_from(groups.len()).ok()?.to_be_bytes());
        out.extend_from_slice(&weight.to_be_bytes());
        out.extend_from_slice(&sign.to_be_bytes());
        out.extend_from_slice(&i16::try_from(scale).ok()?.to_be_bytes());
        for group in groups {
            out.extend_from_slice(&group.to_be_bytes());
        }
        Some(out)
    }
}

impl Decimal {
    /// (sign, base-10000 digits, weight, display scale) of `numeric_send`.
    fn base_10000(&self) -> Option<(u16, Vec<i16>, i16, u32)> {
        if self.digits.is_empty() {
            return Some((NUMERIC_POS, Vec::new(), 0, self.scale));
        }
        // The power of ten of the first digit, and the base-10000 digit it falls in.
        let top = i64::try_from(self.digits.len()).ok()? - i64::from(self.scale) - 1;
        let weight = top.div_euclid(DEC_DIGITS);
        let mut groups: Vec<i16> = Vec::new();
        for (i, &digit) in self.digits.iter().enumerate() {
            let power = top - i64::try_from(i).ok()?;
            let group = usize::try_from(weight - power.div_euclid(DEC_DIGITS)).ok()?;
            if groups.len() <= group {
                groups.resize(group + 1, 0);
            }
            groups[group] += i16::from(digit) * 10i16.pow(power.rem_euclid(DEC_DIGITS) as u32);
        }
        while groups.last() == Some(&0) {
            groups.pop();
        }
        let sign = if self.negative {
            NUMERIC_NEG
        } else {
            NUMERIC_POS
        };
        Some((sign, groups, i16::try_from(weight).ok()?, self.scale))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(text: &str) -> Numeric {
        Numeric::parse(text).unwrap()
    }

    #[test]
    fn parses_and_prints_what_numeric_out_prints() {
        for text in [
            "0",
            "-1.50",
            "0.001",
            "123456789012345678901234567890.5",
            "NaN",
        ] {
            assert_eq!(num(text).to_text(), text);
        }
        assert_eq!(num("-0.00").to_text(), "0.00");
        for bad in ["", "1e5", "1.2.3", "--1", ".5", "abc"] {
            assert!(Numeric::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn adds_exactly_keeping_the_larger_scale() {
        assert_eq!(num("1.50").add(&num("2.5")).to_text(), "4.00");
        assert_eq!(num("-3").add(&num("1.25")).to_text(), "-1.75");
        assert_eq!(num("3").add(&num("-3.0")).to_text(), "0.0");
        assert_eq!(
            num("99999999999999999999").add(&num("1")).to_text(),
            "100000000000000000000"
        );
        assert_eq!(num("Infinity").add(&num("-Infinity")), Numeric::NaN);
        assert_eq!(num("Infinity").add(&num("5")), Numeric::Infinity);
    }

    #[test]
    fn orders_by_value_with_special_values_last() {
        assert!(num("1.0") == num("1.00"));
        assert!(num("-2") < num("-1.5"));
        assert!(num("0.09") < num("0.1"));
        assert!(num("-Infinity") < num("-999"));
        assert!(num("999") < num("Infinity"));
        assert!(num("Infinity") < num("NaN"));
    }

    /// Expected texts are what PostgreSQL 15 prints for the same avg.
    #[test]
    fn divides_like_numeric_div() {
        // avg of 1, 2 -> 1.5000000000000000
        assert_eq!(num("3").div_count(2).to_text(), "1.5000000000000000");
        // avg of 1, 2, 3, 4 (sum 10) -> 2.5000000000000000
        assert_eq!(num("10").div_count(4).to_text(), "2.5000000000000000");
        // select 1::numeric / 3 -> 0.33333333333333333333
        assert_eq!(num("1").div_count(3).to_text(), "0.33333333333333333333");
        // select 20000::numeric / 3 -> 6666.6666666666666667
        assert_eq!(num("20000").div_count(3).to_text(), "6666.6666666666666667");
        // select -2::numeric / 3 -> -0.66666666666666666667
        assert_eq!(num("-2").div_count(3).to_text(), "-0.66666666666666666667");
        // select 10.50::numeric / 4 -> 2.6250000000000000
        assert_eq!(num("10.50").div_count(4).to_text(), "2.6250000000000000");
        // select 0::numeric / 5 -> 0.00000000000000000000
        assert_eq!(num("0").div_count(5).to_text(), "0.00000000000000000000");
        assert_eq!(num("NaN").div_count(5), Numeric::NaN);
    }
}

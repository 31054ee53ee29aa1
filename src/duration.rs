//! Durations as runbooks write them: `500ms`, `5s`, `10min`, `1h`.

use std::fmt;
use std::time::Duration as StdDuration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration parsed from the runbook syntax, printed back the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Duration(pub StdDuration);

/// Why a duration string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("invalid duration `{0}`")]
    Syntax(String),
    #[error("duration `{0}` is too long")]
    Overflow(String),
}

impl Duration {
    pub const HINT: &'static str =
        "write durations as a whole number and a unit: 500ms, 5s, 10min or 1h";

    pub fn parse(text: &str) -> Result<Self, DurationError> {
        let digits = text.bytes().take_while(u8::is_ascii_digit).count();
        let (number, unit) = text.split_at(digits);
        if number.is_empty() {
            return Err(DurationError::Syntax(text.to_string()));
        }
        let n: u64 = number
            .parse()
            .map_err(|_| DurationError::Overflow(text.to_string()))?;
        let millis = match unit {
            "ms" => Some(n),
            "s" => n.checked_mul(1_000),
            "min" => n.checked_mul(60_000),
            "h" => n.checked_mul(3_600_000),
            _ => return Err(DurationError::Syntax(text.to_string())),
        };
        // Anything past a year is a typo, not a timeout.
        match millis {
            Some(ms) if ms <= 366 * 24 * 3_600_000 => Ok(Self(StdDuration::from_millis(ms))),
            _ => Err(DurationError::Overflow(text.to_string())),
        }
    }

    pub fn from_millis(ms: u64) -> Self {
        Self(StdDuration::from_millis(ms))
    }

    pub fn as_millis(&self) -> u64 {
        u64::try_from(self.0.as_millis()).unwrap_or(u64::MAX)
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.as_millis();
        match ms {
            0 => write!(f, "0s"),
            _ if ms.is_multiple_of(3_600_000) => write!(f, "{}h", ms / 3_600_000),
            _ if ms.is_multiple_of(60_000) => write!(f, "{}min", ms / 60_000),
            _ if ms.is_multiple_of(1_000) => write!(f, "{}s", ms / 1_000),
            _ => write!(f, "{ms}ms"),
        }
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_unit() {
        for (text, ms) in [
            ("500ms", 500),
            ("5s", 5_000),
            ("10min", 600_000),
            ("1h", 3_600_000),
            ("0s", 0),
        ] {
            assert_eq!(Duration::parse(text).unwrap().as_millis(), ms, "{text}");
        }
    }

    #[test]
    fn refuses_bad_syntax_and_absurd_lengths() {
        for text in ["", "5", "s", "5 s", "5sec", "1.5s", "-1s", "5m", "1d"] {
            assert_eq!(
                Duration::parse(text),
                Err(DurationError::Syntax(text.into())),
                "{text}"
            );
        }
        assert!(matches!(
            Duration::parse("9999h"),
            Err(DurationError::Overflow(_))
        ));
        assert!(matches!(
            Duration::parse("99999999999999999999999ms"),
            Err(DurationError::Overflow(_))
        ));
    }

    #[test]
    fn displays_in_the_largest_whole_unit() {
        for text in ["500ms", "5s", "10min", "1h", "90s", "1500ms"] {
            assert_eq!(Duration::parse(text).unwrap().to_string(), text);
        }
    }
}

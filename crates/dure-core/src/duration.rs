//! Human-readable durations (`500ms`, `30s`, `2m`, `1h`) as they appear in
//! configuration documents and CLI flags.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A duration written the way operators write it; serialized as that text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct DurationSpec(pub Duration);

/// A duration text that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "duration `{0}` is invalid: write a whole number with a unit, such as 500ms, 30s, 2m or 1h"
)]
pub struct DurationError(pub String);

impl DurationSpec {
    pub fn from_millis(ms: u64) -> Self {
        DurationSpec(Duration::from_millis(ms))
    }
    pub fn from_secs(s: u64) -> Self {
        DurationSpec(Duration::from_secs(s))
    }
    pub fn as_millis(&self) -> u64 {
        u64::try_from(self.0.as_millis()).unwrap_or(u64::MAX)
    }
}

impl FromStr for DurationSpec {
    type Err = DurationError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = || DurationError(text.to_string());
        let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(err)?;
        let (digits, unit) = text.split_at(split);
        let value: u64 = digits.parse().map_err(|_| err())?;
        let millis_per_unit = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            _ => return Err(err()),
        };
        let millis = value.checked_mul(millis_per_unit).ok_or_else(err)?;
        Ok(DurationSpec::from_millis(millis))
    }
}

impl fmt::Display for DurationSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.as_millis();
        if ms != 0 && ms.is_multiple_of(3_600_000) {
            write!(f, "{}h", ms / 3_600_000)
        } else if ms != 0 && ms.is_multiple_of(60_000) {
            write!(f, "{}m", ms / 60_000)
        } else if ms.is_multiple_of(1_000) {
            write!(f, "{}s", ms / 1_000)
        } else {
            write!(f, "{ms}ms")
        }
    }
}

impl Serialize for DurationSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DurationSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_each_unit() {
        assert_eq!("250ms".parse::<DurationSpec>().unwrap().as_millis(), 250);
        assert_eq!("30s".parse::<DurationSpec>().unwrap().as_millis(), 30_000);
        assert_eq!("2m".parse::<DurationSpec>().unwrap().as_millis(), 120_000);
        assert_eq!("1h".parse::<DurationSpec>().unwrap().as_millis(), 3_600_000);
    }

    #[test]
    fn refuses_malformed_text() {
        for bad in [
            "",
            "30",
            "s",
            "-1s",
            "1.5s",
            "3 s",
            "10d",
            "99999999999999999999h",
        ] {
            let err = bad.parse::<DurationSpec>().unwrap_err();
            assert!(err.to_string().contains("500ms, 30s"), "{bad}: {err}");
        }
    }

    proptest! {
        #[test]
        fn display_round_trips(ms in 0u64..10_000_000_000) {
            let spec = DurationSpec::from_millis(ms);
            prop_assert_eq!(spec.to_string().parse::<DurationSpec>().unwrap(), spec);
        }
    }
}

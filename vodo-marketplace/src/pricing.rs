//! Prices and the revenue share, in integer minor units so that no split
//! ever loses or invents a cent.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// An amount in a currency's minor unit (halalas, cents), with its ISO 4217 code.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    /// Minor units; negative for refunds.
    pub minor: i64,
    /// ISO 4217 code, such as `SAR`.
    pub currency: String,
}

impl Money {
    /// `minor` units of `currency` (three upper-case letters).
    pub fn new(minor: i64, currency: &str) -> Result<Self> {
        if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(Error::Invalid(format!(
                "`{currency}` is not an ISO 4217 code such as `SAR` or `USD`"
            )));
        }
        Ok(Self {
            minor,
            currency: currency.into(),
        })
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.minor, self.currency)
    }
}

/// How often a subscription bills.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    /// Every month.
    Monthly,
    /// Every year.
    Yearly,
}

/// What a plugin costs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "tier", rename_all = "snake_case")]
pub enum Pricing {
    /// Free.
    Free,
    /// Paid once.
    OneTime {
        /// The price.
        price: Money,
    },
    /// Paid every period, after an optional trial.
    Subscription {
        /// The price per period.
        price: Money,
        /// The period.
        period: Period,
        /// Free days before the first charge.
        trial_days: u32,
    },
}

impl Pricing {
    /// The price of the first charge, if any (a subscription's first period).
    pub fn price(&self) -> Option<&Money> {
        match self {
            Pricing::Free => None,
            Pricing::OneTime { price } | Pricing::Subscription { price, .. } => Some(price),
        }
    }

    /// Checks amounts and the trial.
    pub fn validate(&self) -> Result<()> {
        if let Some(p) = self.price()
            && p.minor <= 0
        {
            return Err(Error::Invalid(
                "a paid tier costs more than zero: use `free` instead".into(),
            ));
        }
        if let Pricing::Subscription { trial_days, .. } = self
            && *trial_days > 90
        {
            return Err(Error::Invalid("a trial is at most 90 days".into()));
        }
        Ok(())
    }
}

/// The developer's part of each sale, in basis points (70/30 by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevenueShare {
    developer_bps: u32,
}

impl Default for RevenueShare {
    /// 70% to the developer, 30% to the platform.
    fn default() -> Self {
        Self {
            developer_bps: 7000,
        }
    }
}

/// A sale split in two.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// The developer's part.
    pub developer: Money,
    /// The platform's part.
    pub platform: Money,
}

impl RevenueShare {
    /// A share giving the developer `developer_bps` basis points (0 to 10,000).
    pub fn new(developer_bps: u32) -> Result<Self> {
        if developer_bps > 10_000 {
            return Err(Error::Invalid(
                "a revenue share is 0 to 10,000 basis points".into(),
            ));
        }
        Ok(Self { developer_bps })
    }

    /// Splits `gross`. The developer's part is rounded half to even on the
    /// minor unit; the platform gets exactly the rest, so the two parts
    /// always add up to the gross.
    pub fn split(&self, gross: &Money) -> Split {
        let num = i128::from(gross.minor) * i128::from(self.developer_bps);
        let (q, r) = (num.div_euclid(10_000), num.rem_euclid(10_000));
        let rounded = match r.cmp(&5_000) {
            std::cmp::Ordering::Less => q,
            std::cmp::Ordering::Greater => q + 1,
            std::cmp::Ordering::Equal => q + (q & 1),
        };
        // |rounded| <= |gross|, so it fits in i64.
        let developer = i64::try_from(rounded).unwrap_or(gross.minor);
        Split {
            developer: Money {
                minor: developer,
                currency: gross.currency.clone(),
            },
            platform: Money {
                minor: gross.minor - developer,
                currency: gross.currency.clone(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_always_add_up() {
        let share = RevenueShare::default();
        for minor in [
            -101,
            -1,
            0,
            1,
            3,
            7,
            10,
            99,
            101,
            333,
            1_000_001,
            i64::MAX / 2,
            i64::MAX,
        ] {
            let gross = Money::new(minor, "SAR").unwrap();
            let s = share.split(&gross);
            assert_eq!(
                i128::from(s.developer.minor) + i128::from(s.platform.minor),
                i128::from(minor),
                "{minor}"
            );
        }
        let s = share.split(&Money::new(101, "SAR").unwrap());
        assert_eq!((s.developer.minor, s.platform.minor), (71, 30)); // 70.7 rounds to 71
        let s = share.split(&Money::new(5, "SAR").unwrap());
        assert_eq!((s.developer.minor, s.platform.minor), (4, 1)); // 3.5 rounds to even: 4
        let s = RevenueShare::new(8_500)
            .unwrap()
            .split(&Money::new(1, "USD").unwrap());
        assert_eq!((s.developer.minor, s.platform.minor), (1, 0)); // 0.85 rounds to 1
        assert!(RevenueShare::new(10_001).is_err());
        assert!(Money::new(1, "sar").is_err());
    }

    #[test]
    fn tiers_validate() {
        let sar = |m| Money::new(m, "SAR").unwrap();
        assert!(Pricing::Free.validate().is_ok());
        assert!(Pricing::OneTime { price: sar(0) }.validate().is_err());
        assert!(
            Pricing::Subscription {
                price: sar(2900),
                period: Period::Monthly,
                trial_days: 14
            }
            .validate()
            .is_ok()
        );
        assert!(
            Pricing::Subscription {
                price: sar(2900),
                period: Period::Yearly,
                trial_days: 365
            }
            .validate()
            .is_err()
        );
    }
}

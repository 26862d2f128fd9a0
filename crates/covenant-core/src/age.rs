//! Age rules (promise M1): where a person lives decides the jurisdiction, and the jurisdiction's
//! minimum age and parental-consent age decide whether they may join, must wait for a parent,
//! or must first give their birth date because the year alone cannot tell.
//! Pure: the caller passes today's date.

use crate::policy::{Jurisdiction, JurisdictionRules};
use time::{Date, Month};

/// The member states of the EU and the other EEA countries (Iceland, Liechtenstein, Norway),
/// as ISO 3166-1 alpha-2 codes.
pub const EU_EEA_COUNTRIES: [&str; 30] = [
    "AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE", "IT", "LV",
    "LT", "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE", "IS", "LI", "NO",
];

/// The US states whose own privacy law the policy names, by postal code.
pub const US_STATES_WITH_LAW: [(&str, Jurisdiction); 9] = [
    ("CA", Jurisdiction::California),
    ("NV", Jurisdiction::Nevada),
    ("VA", Jurisdiction::Virginia),
    ("CO", Jurisdiction::Colorado),
    ("CT", Jurisdiction::Connecticut),
    ("MT", Jurisdiction::Montana),
    ("OR", Jurisdiction::Oregon),
    ("TX", Jurisdiction::Texas),
    ("UT", Jurisdiction::Utah),
];

/// Where a person says they live: a country, and the state when the country is the US.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Residence {
    country: String,
    us_state: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ResidenceError {
    #[error("choose the country you live in")]
    NoCountry,
    #[error("choose the state you live in")]
    NoUsState,
}

impl Residence {
    /// Takes a two-letter country code and, for the US, a two-letter state code. Any state
    /// given for another country is dropped: it would be data we do not need.
    pub fn new(country: &str, us_state: Option<&str>) -> Result<Self, ResidenceError> {
        let country = country.trim().to_ascii_uppercase();
        if country.len() != 2 || !country.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(ResidenceError::NoCountry);
        }
        let us_state = if country == "US" {
            let state = us_state
                .map(|s| s.trim().to_ascii_uppercase())
                .filter(|s| s.len() == 2 && s.bytes().all(|b| b.is_ascii_uppercase()))
                .ok_or(ResidenceError::NoUsState)?;
            Some(state)
        } else {
            None
        };
        Ok(Self { country, us_state })
    }

    pub fn country(&self) -> &str {
        &self.country
    }

    pub fn us_state(&self) -> Option<&str> {
        self.us_state.as_deref()
    }

    /// The jurisdiction whose rules apply.
    pub fn jurisdiction(&self) -> Jurisdiction {
        if EU_EEA_COUNTRIES.contains(&self.country.as_str()) {
            return Jurisdiction::EuEea;
        }
        match (self.country.as_str(), self.us_state.as_deref()) {
            ("GB", _) => Jurisdiction::Uk,
            ("US", Some(state)) => US_STATES_WITH_LAW
                .iter()
                .find(|(code, _)| *code == state)
                .map_or(Jurisdiction::Other, |(_, jurisdiction)| *jurisdiction),
            _ => Jurisdiction::Other,
        }
    }
}

/// What is known of a birth: always the year, the date when it was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Birth {
    pub year: i32,
    pub date: Option<Date>,
}

/// The ages a person can have today: one when the date is known, two (the birthday may not have
/// come yet this year) when only the year is.
fn possible_ages(birth: Birth, today: Date) -> (i32, i32) {
    match birth.date {
        Some(date) => {
            let mut age = today.year() - date.year();
            let birthday_passed =
                (today.month() as u8, today.day()) >= (date.month() as u8, date.day());
            if !birthday_passed {
                age -= 1;
            }
            (age, age)
        }
        None => {
            let oldest = today.year() - birth.year;
            (oldest - 1, oldest)
        }
    }
}

/// Where a threshold age falls for this person.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Under,
    Unknown,
    AtOrOver,
}

fn side_of(threshold: u8, ages: (i32, i32)) -> Side {
    let threshold = i32::from(threshold);
    if ages.1 < threshold {
        Side::Under
    } else if ages.0 >= threshold {
        Side::AtOrOver
    } else {
        Side::Unknown
    }
}

/// The answer of the age rules for one registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgeVerdict {
    /// Too young to hold an account here: nothing typed may be kept.
    Refused {
        minimum_age: u8,
    },
    /// The year alone cannot decide; the birth date decides (and is not kept afterwards).
    NeedsBirthDate,
    /// May join, but the account waits for a parent's consent before it can post.
    NeedsParentalConsent {
        under: u8,
    },
    Admitted,
}

/// Applies a jurisdiction's age rules to a birth, today.
pub fn age_verdict(rules: &JurisdictionRules, birth: Birth, today: Date) -> AgeVerdict {
    let ages = possible_ages(birth, today);
    match side_of(rules.minimum_age, ages) {
        Side::Under => {
            return AgeVerdict::Refused {
                minimum_age: rules.minimum_age,
            };
        }
        Side::Unknown => return AgeVerdict::NeedsBirthDate,
        Side::AtOrOver => {}
    }
    match rules
        .parental_consent_under
        .map(|under| (under, side_of(under, ages)))
    {
        Some((under, Side::Under)) => AgeVerdict::NeedsParentalConsent { under },
        Some((_, Side::Unknown)) => AgeVerdict::NeedsBirthDate,
        _ => AgeVerdict::Admitted,
    }
}

/// Parses a birth date typed as `YYYY-MM-DD` (what an HTML date input sends).
pub fn parse_birth_date(text: &str) -> Option<Date> {
    let mut parts = text.trim().splitn(3, '-');
    let year: i32 = parts.next()?.parse().ok()?;
    let month: u8 = parts.next()?.parse().ok()?;
    let day: u8 = parts.next()?.parse().ok()?;
    Date::from_calendar_date(year, Month::try_from(month).ok()?, day).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Policy;
    use time::macros::date;

    fn rules(jurisdiction: Jurisdiction) -> JurisdictionRules {
        Policy::default_policy().jurisdiction(jurisdiction).clone()
    }

    fn year(year: i32) -> Birth {
        Birth { year, date: None }
    }

    #[test]
    fn residence_names_the_jurisdiction() {
        let of = |c, s| Residence::new(c, s).unwrap().jurisdiction();
        assert_eq!(of("fr", None), Jurisdiction::EuEea);
        assert_eq!(of("NO", None), Jurisdiction::EuEea);
        assert_eq!(of("GB", None), Jurisdiction::Uk);
        assert_eq!(of("US", Some("ca")), Jurisdiction::California);
        assert_eq!(of("US", Some("NY")), Jurisdiction::Other);
        assert_eq!(of("JP", Some("CA")), Jurisdiction::Other);
        assert_eq!(Residence::new("JP", Some("CA")).unwrap().us_state(), None);
        assert_eq!(
            Residence::new("US", None).unwrap_err(),
            ResidenceError::NoUsState
        );
        assert_eq!(
            Residence::new("", None).unwrap_err(),
            ResidenceError::NoCountry
        );
    }

    #[test]
    fn twelve_year_olds_are_refused_everywhere() {
        let today = date!(2026 - 11 - 29);
        for jurisdiction in Jurisdiction::ALL {
            assert_eq!(
                age_verdict(&rules(jurisdiction), year(2014), today),
                AgeVerdict::Refused { minimum_age: 13 },
                "{jurisdiction:?}"
            );
        }
    }

    #[test]
    fn a_fourteen_year_old_waits_for_a_parent_in_the_eu_only() {
        let today = date!(2026 - 11 - 29);
        assert_eq!(
            age_verdict(&rules(Jurisdiction::EuEea), year(2012), today),
            AgeVerdict::NeedsParentalConsent { under: 16 }
        );
        assert_eq!(
            age_verdict(&rules(Jurisdiction::California), year(2012), today),
            AgeVerdict::Admitted
        );
    }

    #[test]
    fn a_year_on_a_threshold_asks_for_the_date() {
        let today = date!(2026 - 06 - 15);
        let california = rules(Jurisdiction::California);
        assert_eq!(
            age_verdict(&california, year(2013), today),
            AgeVerdict::NeedsBirthDate
        );
        let born = |d| Birth {
            year: 2013,
            date: Some(d),
        };
        assert_eq!(
            age_verdict(&california, born(date!(2013 - 06 - 15)), today),
            AgeVerdict::Admitted
        );
        assert_eq!(
            age_verdict(&california, born(date!(2013 - 06 - 16)), today),
            AgeVerdict::Refused { minimum_age: 13 }
        );
        let eu = rules(Jurisdiction::EuEea);
        assert_eq!(
            age_verdict(&eu, year(2010), today),
            AgeVerdict::NeedsBirthDate
        );
        assert_eq!(
            age_verdict(
                &eu,
                Birth {
                    year: 2010,
                    date: Some(date!(2010 - 12 - 01))
                },
                today
            ),
            AgeVerdict::NeedsParentalConsent { under: 16 }
        );
        assert_eq!(age_verdict(&eu, year(1990), today), AgeVerdict::Admitted);
    }

    #[test]
    fn birth_dates_parse_as_html_sends_them() {
        assert_eq!(parse_birth_date("2013-02-28"), Some(date!(2013 - 02 - 28)));
        assert_eq!(parse_birth_date("2013-02-30"), None);
        assert_eq!(parse_birth_date("yesterday"), None);
    }
}

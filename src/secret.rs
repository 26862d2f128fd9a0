//! Values that must never reach a log line: personal data and credentials redact themselves.

use std::fmt;

/// A value whose `Debug` and `Display` print `[redacted]`.
///
/// Wrap personal data (emails, IP addresses, user agents) and credentials in it wherever they
/// travel through code that might log; read the value with [`Redacted::expose`] where it is used.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Redacted<T>(T);

impl<T> Redacted<T> {
    pub fn new(value: T) -> Self {
        Self(value)
    }

    pub fn expose(&self) -> &T {
        &self.0
    }

    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> fmt::Debug for Redacted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<T> fmt::Display for Redacted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<T> From<T> for Redacted<T> {
    fn from(value: T) -> Self {
        Self(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacted_values_print_nothing_of_themselves() {
        let email = Redacted::new("someone@example.org".to_string());
        assert_eq!(format!("{email:?} {email}"), "[redacted] [redacted]");
        assert_eq!(email.expose(), "someone@example.org");
    }
}

//! Names of the closed sets the server stores as TEXT (consent choices, request states, …):
//! one macro gives each enum its `ALL`, `as_str` and `parse`, always spelled like its serde
//! name, and days are written as ISO 8601 text. It owns spelling only; it must never decide
//! anything.

/// A stored name that is not one of the set's names: the row was written by something else.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not a known {what}")]
pub struct UnknownName {
    pub what: &'static str,
    pub text: String,
}

/// `stored_names!(Type, "what it is", { Variant => "name", … })` for a fieldless enum.
macro_rules! stored_names {
    ($type:ty, $what:literal, { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $type {
            pub const ALL: &'static [$type] = &[$(<$type>::$variant),+];

            /// The name stored as TEXT, the same as its serde name.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(<$type>::$variant => $name),+
                }
            }

            pub fn parse(text: &str) -> Result<$type, $crate::stored::UnknownName> {
                match text {
                    $($name => Ok(<$type>::$variant),)+
                    _ => Err($crate::stored::UnknownName { what: $what, text: text.to_owned() }),
                }
            }
        }

        impl std::fmt::Display for $type {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

pub(crate) use stored_names;

// Days are stored and exported as ISO 8601 text (`2028-02-29`), not as time's default tuple.
time::serde::format_description!(pub iso_date, Date, "[year]-[month]-[day]");

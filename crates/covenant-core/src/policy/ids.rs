//! Identifiers the rest of the program passes around: data category keys (Fideslang style,
//! `user.contact.email`) and purpose ids. Parsed once, so a value of these types is well formed.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A Fideslang-style data category key: dot-separated lowercase segments, at least two.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CategoryKey(String);

/// A purpose (data use) id: lowercase letters, digits and underscores.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PurposeId(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("`{0}` is not a data category key such as `user.contact.email`")]
    Category(String),
    #[error("`{0}` is not a purpose id (lowercase letters, digits and `_`)")]
    Purpose(String),
}

fn is_word(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'_')
}

impl CategoryKey {
    pub fn parse(text: &str) -> Result<CategoryKey, IdError> {
        let segments: Vec<&str> = text.split('.').collect();
        if segments.len() >= 2 && segments.iter().all(|segment| is_word(segment)) {
            Ok(CategoryKey(text.to_owned()))
        } else {
            Err(IdError::Category(text.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl PurposeId {
    pub fn parse(text: &str) -> Result<PurposeId, IdError> {
        if is_word(text) {
            Ok(PurposeId(text.to_owned()))
        } else {
            Err(IdError::Purpose(text.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for CategoryKey {
    type Error = IdError;
    fn try_from(text: String) -> Result<Self, IdError> {
        CategoryKey::parse(&text)
    }
}

impl TryFrom<String> for PurposeId {
    type Error = IdError;
    fn try_from(text: String) -> Result<Self, IdError> {
        PurposeId::parse(&text)
    }
}

impl From<CategoryKey> for String {
    fn from(key: CategoryKey) -> String {
        key.0
    }
}

impl From<PurposeId> for String {
    fn from(id: PurposeId) -> String {
        id.0
    }
}

impl fmt::Display for CategoryKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for PurposeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

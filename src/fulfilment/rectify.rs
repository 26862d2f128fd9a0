//! Rectification (R9): a profile field is corrected by the member on their profile page, or by
//! staff on a request; the audit log records who, which field and the classes of its old and
//! new value ("empty", "short", "long"), never the values themselves.

use super::Fulfilment;
use crate::audit::{self, AuditKind, Detail, Event as AuditEvent};
use crate::domain::InvalidField;
use crate::error::{Error, Result};
use crate::inventory::{self, Data};
use crate::store;
use anyhow::Context;

/// The profile fields staff may correct: the form's name and the `users` column. Each must be
/// declared personal in the inventory (checked when used, and by a unit test).
const RECTIFIABLE: &[(&str, &str)] = &[("bio", "bio")];

/// The longest value a corrected field takes.
const MAX_CHARS: usize = 2000;

/// The class of a value the audit log may carry: nothing of the value but whether it is empty
/// and roughly how long.
pub fn value_class(value: &str) -> &'static str {
    match value.trim().chars().count() {
        0 => "empty",
        1..=80 => "short",
        _ => "long",
    }
}

fn declared_personal(column: &str) -> bool {
    inventory::TABLES
        .iter()
        .find(|table| table.name == "users")
        .and_then(|table| table.column(column))
        .is_some_and(|c| matches!(c.data, Data::Personal(_)))
}

impl Fulfilment {
    /// Sets `field` of the subject's profile to `value`: the member themselves (`actor_id` is
    /// `user_id`) or staff correcting it on a request.
    pub async fn rectify(
        &self,
        actor_id: i64,
        user_id: i64,
        request_id: Option<i64>,
        field: &str,
        value: &str,
    ) -> Result<()> {
        let Some(&(name, column)) = RECTIFIABLE
            .iter()
            .find(|(name, column)| *name == field && declared_personal(column))
        else {
            return Err(Error::invalid(InvalidField::new(
                "field",
                "is not a field staff can correct",
            )));
        };
        let value = value.trim();
        if value.chars().count() > MAX_CHARS {
            return Err(Error::invalid(InvalidField::new("text", "is too long")));
        }
        let mut tx = self.store().begin().await?;
        let old = store::rectify_user_column(&mut tx, column, user_id, value)
            .await?
            .ok_or(Error::NotFound("account"))?;
        let mut event = AuditEvent::new(AuditKind::DataRectified)
            .actor(Some(actor_id))
            .subject(Some(user_id))
            .detail(Detail::Method(if actor_id == user_id {
                "member"
            } else {
                "staff"
            }))
            .detail(Detail::Field(name))
            .detail(Detail::Before(value_class(&old)))
            .detail(Detail::After(value_class(value)));
        if let Some(id) = request_id {
            event = event.detail(Detail::Request(id));
        }
        audit::record(&mut tx, self.audit_key(), event).await?;
        tx.commit().await.context("rectifying a profile field")?;
        tracing::info!(user_id, field = name, "profile field rectified");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rectifiable_field_is_declared_personal() {
        for (_, column) in RECTIFIABLE {
            assert!(declared_personal(column), "users.{column}");
        }
    }

    #[test]
    fn classes_say_nothing_of_the_value() {
        assert_eq!(value_class("  "), "empty");
        assert_eq!(value_class("Gardener"), "short");
        assert_eq!(value_class(&"x".repeat(81)), "long");
    }
}

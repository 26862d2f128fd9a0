-- Why a queued message was withheld instead of sent: 'restricted' (the member restricted
-- processing, the purpose gate held it back) or 'account closed' (queued for a member whose
-- account closed before it went out). Blank for mail that was not withheld.
ALTER TABLE mail_outbox ADD COLUMN withheld_reason TEXT NOT NULL DEFAULT '';
UPDATE mail_outbox SET withheld_reason = 'restricted' WHERE withheld_at IS NOT NULL;

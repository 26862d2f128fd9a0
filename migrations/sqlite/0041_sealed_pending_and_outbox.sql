-- The last plain private fields are sealed (R8): a provider sign-up not finished keeps its
-- address and provider account id sealed under a key of its own row, found by the keyed hash
-- of the address; mail to a person without an account keeps its address and subject sealed
-- (under its request's key, or its own), found by the keyed hash of the address. Rows stored
-- plain before are sealed, and their hashes filled, when the forum next starts.
ALTER TABLE social_pending ADD COLUMN email_lookup TEXT NOT NULL DEFAULT '';
CREATE INDEX social_pending_email_lookup ON social_pending(email_lookup);
ALTER TABLE mail_outbox ADD COLUMN recipient_lookup TEXT NOT NULL DEFAULT '';
CREATE INDEX mail_outbox_recipient_lookup ON mail_outbox(recipient_lookup);

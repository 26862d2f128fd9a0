-- Crypto-shredding (R8), the rest of the private fields: a privacy-request submission's
-- requester name and addresses and a request's decision and extension reason are sealed under
-- the submission's key; a parent's address and a provider account's id under the member's.
-- The columns found by equality get a keyed hash beside them (`k1:` + hex, as
-- users.email_lookup); existing rows are sealed and hashed at start
-- (`Store::seal_plain_member_fields`), so they hold '' until then.
ALTER TABLE privacy_submissions ADD COLUMN requester_email_lookup TEXT NOT NULL DEFAULT '';
ALTER TABLE privacy_submissions ADD COLUMN subject_email_lookup TEXT NOT NULL DEFAULT '';
ALTER TABLE parental_consents ADD COLUMN parent_email_lookup TEXT NOT NULL DEFAULT '';
ALTER TABLE social_links ADD COLUMN subject_lookup TEXT NOT NULL DEFAULT '';
-- A sealed provider id differs on every sealing: uniqueness moves to its keyed hash.
DROP INDEX social_links_subject;
CREATE UNIQUE INDEX social_links_subject_lookup ON social_links(provider, subject_lookup)
    WHERE subject_lookup <> '';
CREATE INDEX parental_consents_parent_lookup ON parental_consents(parent_email_lookup);
-- The body of a request's email is correspondence: sealed under the key of the submission
-- named here (NULL for other mail).
ALTER TABLE mail_outbox ADD COLUMN submission_id BIGINT;

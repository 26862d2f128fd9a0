-- A parent acting for a minor (promises R4, M1): when the requester's address is the one a
-- parent consented from when the minor joined, that recorded consent is the evidence of
-- parenthood, linked here instead of an uploaded file. NULL for every other submission; a
-- consent deleted with the minor's account leaves the submission without it.
ALTER TABLE privacy_submissions
    ADD COLUMN parental_consent_id BIGINT REFERENCES parental_consents(id) ON DELETE SET NULL;

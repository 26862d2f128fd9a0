-- A member's change of email address waits for the link mailed to the new address (issue 8):
-- the pending address rides on its single-use token (purpose 'change_email'), sealed under the
-- member's key like users.email, and goes with the token (used, expired or swept). Blank for
-- every other token.
ALTER TABLE account_tokens ADD COLUMN new_email TEXT NOT NULL DEFAULT '';

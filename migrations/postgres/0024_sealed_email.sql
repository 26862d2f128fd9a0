-- Crypto-shredding (R8): users.email is sealed with the member's key, and the column that
-- held the address in lower case for lookups holds its keyed hash (`k1:` + hex) instead.
-- Existing rows are sealed and hashed at start (`Accounts::seal_private_fields`).
ALTER TABLE users RENAME COLUMN email_lower TO email_lookup;

-- Crypto-shredding (R8): a member's birth year is sealed with their key like their address,
-- so the column becomes text: the year in decimal until the start seals it
-- (`Store::seal_plain_fields`), '' where it was erased (0 before).
ALTER TABLE users ADD COLUMN birth_year_sealed TEXT NOT NULL DEFAULT '';
UPDATE users SET birth_year_sealed = CAST(birth_year AS TEXT) WHERE birth_year <> 0;
ALTER TABLE users DROP COLUMN birth_year;
ALTER TABLE users RENAME COLUMN birth_year_sealed TO birth_year;

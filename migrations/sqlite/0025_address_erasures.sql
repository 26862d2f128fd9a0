-- Erasures of people without an account (R8), identified by the keyed hash of their address
-- (`sealing::Sealing::lookup`, `k1:` + hex), never the address. Copied to a file outside the
-- database (`erased-addresses.txt`), so that a restored backup is erased again at start.
CREATE TABLE address_erasures (
    lookup    TEXT PRIMARY KEY,
    erased_at BIGINT NOT NULL
);

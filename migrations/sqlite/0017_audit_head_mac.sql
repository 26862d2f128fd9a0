-- The chain's head is signed with the audit key (kept outside the database) at every append,
-- in the append's transaction. Someone with the database alone who deletes the newest entries
-- and rewinds the head to the last entry kept cannot sign the rewound head, so `covenant audit
-- verify` reports the truncated tail. Empty until the next append after this migration.
ALTER TABLE audit_head ADD COLUMN mac TEXT NOT NULL DEFAULT '';

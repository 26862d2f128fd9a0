-- The sweep now takes a closed member's residence (jurisdiction, country, US state) last, once
-- everything else of theirs is gone. Members it finished before it did (anonymized_at set)
-- still hold theirs: they become due again, so the next sweep deletes it, audited like the
-- rest (every other step finds nothing left and counts zero).
UPDATE users SET anonymized_at = NULL
WHERE anonymized_at IS NOT NULL AND closed_at IS NOT NULL
  AND username_lower <> 'deleted user'
  AND (jurisdiction IS NOT NULL OR country IS NOT NULL OR us_state IS NOT NULL);

-- An access request may ask for the specific pieces of data held (1) rather than what is held
-- (0): the same right with a higher proof of identity (code plus one more held fact, or a
-- session), recorded in required_level; this column says which was asked.
ALTER TABLE privacy_requests ADD COLUMN specific_pieces BIGINT NOT NULL DEFAULT 0;

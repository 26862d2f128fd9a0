-- The retention sweep and erasure find a member's messages to us by their sender; without this
-- index each sweep batch read the whole feedback table twice (EXPLAIN QUERY PLAN: SCAN feedback).
CREATE INDEX feedback_user ON feedback(user_id);

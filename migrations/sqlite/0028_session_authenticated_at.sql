-- When the member last proved who they are on this session (signing in, or entering the
-- password again): sensitive account actions need it to be recent ("sudo mode", ASVS 3.3.2),
-- while the session itself lasts session.max_age_days. Sessions from before start at their
-- sign-in.
ALTER TABLE sessions ADD COLUMN authenticated_at BIGINT NOT NULL DEFAULT 0;
UPDATE sessions SET authenticated_at = created_at;

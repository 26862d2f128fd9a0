-- When the retention sweep last told a member that their account, unused for nearly the
-- policy's inactivity limit, would be closed (`[inactivity] account_days`): a warning older
-- than the member's last activity no longer counts.
ALTER TABLE users ADD COLUMN inactivity_warned_at BIGINT;

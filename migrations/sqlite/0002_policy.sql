-- Published policy versions, members' acknowledgements of material changes, and the resumable
-- runs that queue the change notices. Versions are immutable once written: nothing updates them.
-- Dates are ISO text (YYYY-MM-DD, which sorts as it reads); times are epoch seconds.

CREATE TABLE policy_versions (
    id            INTEGER PRIMARY KEY,
    version_label TEXT NOT NULL UNIQUE,
    effective_on  TEXT NOT NULL,
    published_at  BIGINT NOT NULL,
    toml_text     TEXT NOT NULL,
    sha256        TEXT NOT NULL,
    material      BIGINT NOT NULL,
    diff_json     TEXT NOT NULL
);
CREATE INDEX policy_versions_effective ON policy_versions(effective_on, id);

CREATE TABLE policy_acknowledgements (
    user_id         BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    version_id      BIGINT NOT NULL REFERENCES policy_versions(id),
    acknowledged_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, version_id)
);

-- One row per material version: the notices are queued in batches of members ordered by id,
-- and `after_user_id` records how far the batches got, so a run cut short resumes there.
CREATE TABLE policy_notice_runs (
    version_id    BIGINT PRIMARY KEY REFERENCES policy_versions(id),
    after_user_id BIGINT NOT NULL DEFAULT 0,
    n_queued      BIGINT NOT NULL DEFAULT 0,
    created_at    BIGINT NOT NULL,
    finished_at   BIGINT
);

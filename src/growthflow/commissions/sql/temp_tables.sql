-- Scratch tables of one gold transaction (dropped at its end). @clustered() stores a SQLite
-- table in its primary key's order (WITHOUT ROWID), so a scan by the key needs no sort.
CREATE TEMP TABLE gf_tmp_days (day DATE PRIMARY KEY);
-- the scopes whose gold this transaction writes (the others are inputs at most)
CREATE TEMP TABLE gf_tmp_scopes (scope TEXT PRIMARY KEY);
-- the days whose running totals changed (their counters' next readings change too)
CREATE TEMP TABLE gf_tmp_reading_days (day DATE PRIMARY KEY);
CREATE TEMP TABLE gf_tmp_counters (marketing_source TEXT, operator TEXT, day DATE);
CREATE TEMP TABLE gf_tmp_operator_keys (key TEXT PRIMARY KEY, std_operator TEXT NOT NULL);
CREATE TEMP TABLE gf_tmp_earnings (
    scope TEXT, day DATE, marketing_source TEXT, operator TEXT, raw_e4 BIGINT,
    PRIMARY KEY (scope, day, marketing_source, operator)) @clustered();
CREATE TEMP TABLE gf_tmp_clicks (
    day DATE, marketing_source TEXT, clicks BIGINT, PRIMARY KEY (day, marketing_source));
CREATE TEMP TABLE gf_tmp_activity (
    scope TEXT, day DATE, marketing_source TEXT, raw_e4 BIGINT, clicks BIGINT,
    operators BIGINT, same_in_combined INTEGER,
    PRIMARY KEY (scope, day, marketing_source)) @clustered();
CREATE TEMP TABLE gf_tmp_source_day (
    scope TEXT, day DATE, marketing_source TEXT, deal TEXT, raw_e4 BIGINT, clicks BIGINT,
    operators BIGINT, same_in_combined INTEGER, commission_cents BIGINT,
    PRIMARY KEY (scope, day, marketing_source)) @clustered();

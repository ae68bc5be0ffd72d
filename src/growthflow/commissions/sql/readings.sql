-- Rule 10, scrapers: one reading per (marketing source, std operator) per day; the last row of
-- the file wins. Rebuilt for the days whose running totals changed (gf_tmp_reading_days: every
-- day when a snapshot changed); the other recomputed days keep theirs.
INSERT INTO gf_tmp_counters (marketing_source, operator, day)
SELECT r.marketing_source, r.operator, r.day
FROM gf_commission_readings r JOIN gf_tmp_reading_days d ON d.day = r.day;

DELETE FROM gf_commission_readings WHERE day IN (SELECT day FROM gf_tmp_reading_days);

INSERT INTO gf_commission_readings
    (marketing_source, operator, day, total_e4, readings, file_id, line)
SELECT marketing_source, operator, day, total_e4, readings, file_id, line
FROM (
    SELECT t.marketing_source, COALESCE(k.std_operator, t.operator) AS operator, t.day,
           t.total_earnings_e4 AS total_e4, t.file_id, t.line,
           ROW_NUMBER() OVER (PARTITION BY t.day, t.marketing_source,
                                           COALESCE(k.std_operator, t.operator)
                              ORDER BY t.file_id DESC, t.line DESC) AS last_first,
           COUNT(*) OVER (PARTITION BY t.day, t.marketing_source,
                                       COALESCE(k.std_operator, t.operator)) AS readings
    FROM commission_silver_running_totals t
    JOIN gf_tmp_reading_days d ON d.day = t.day
    LEFT JOIN gf_tmp_operator_keys k ON k.key = t.operator_key
) chosen
WHERE last_first = 1;

INSERT INTO gf_tmp_counters (marketing_source, operator, day)
SELECT r.marketing_source, r.operator, r.day
FROM gf_commission_readings r JOIN gf_tmp_reading_days d ON d.day = r.day;

-- A counter's next reading after a day whose running totals changed has a new previous
-- reading: recompute it.
INSERT INTO gf_tmp_days (day)
SELECT DISTINCT next_day FROM (
    SELECT (SELECT MIN(r.day) FROM gf_commission_readings r
            WHERE r.marketing_source = c.marketing_source AND r.operator = c.operator
              AND r.day > c.day) AS next_day
    FROM gf_tmp_counters c
) n
WHERE next_day IS NOT NULL AND next_day NOT IN (SELECT day FROM gf_tmp_days);

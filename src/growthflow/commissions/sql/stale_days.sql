-- The combined scope can be written by a step of its own (the Airflow DAG scheduled on the
-- gold Assets). The gold step that leaves it out records the days it recomputed as stale for
-- combined; the step that writes combined (its own, or a gold step of every scope) clears them.
DELETE FROM gf_commission_stale_days
WHERE day IN (SELECT day FROM gf_tmp_days) AND scope IN (SELECT scope FROM gf_tmp_scopes);

INSERT INTO gf_commission_stale_days (scope, day)
SELECT 'combined', d.day
FROM gf_tmp_days d
WHERE NOT EXISTS (SELECT 1 FROM gf_tmp_scopes WHERE scope = 'combined')
  AND NOT EXISTS (SELECT 1 FROM gf_commission_stale_days x
                  WHERE x.scope = 'combined' AND x.day = d.day);

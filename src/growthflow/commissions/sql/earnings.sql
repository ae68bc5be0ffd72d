-- Rule 11, scopes: the raw earnings of each (day, marketing source, operator).
--   events    routy + manual rows (every feed with the role `earnings`)
--   scrapers  the amounts of the scrapers' running totals (baselines have none)
--   combined  both
-- Events and scraper rows are built whatever the scopes written (combined is made of them);
-- combined rows only when the combined scope is written (gf_tmp_scopes).
-- A combined source-day without scraper amounts has exactly its events rows, so the same
-- commission and the same operator shares: its rows are not copied here. The later models
-- count such events source-days in the combined scope too (`same_in_combined`).
INSERT INTO gf_tmp_earnings (scope, day, marketing_source, operator, raw_e4)
SELECT 'events', e.day, e.marketing_source, COALESCE(k.std_operator, e.operator),
       SUM(e.raw_earnings_e4)
FROM commission_silver_earnings e
JOIN gf_tmp_days d ON d.day = e.day
LEFT JOIN gf_tmp_operator_keys k ON k.key = e.operator_key
GROUP BY e.day, e.marketing_source, COALESCE(k.std_operator, e.operator);

INSERT INTO gf_tmp_earnings (scope, day, marketing_source, operator, raw_e4)
SELECT 'scrapers', r.day, r.marketing_source, r.operator, r.amount_e4
FROM gf_commission_readings r JOIN gf_tmp_days d ON d.day = r.day
WHERE r.amount_e4 IS NOT NULL;

-- combined, where a source-day has scraper amounts: its events rows plus its scraper rows
INSERT INTO gf_tmp_earnings (scope, day, marketing_source, operator, raw_e4)
SELECT 'combined', e.day, e.marketing_source, e.operator, e.raw_e4
FROM (SELECT DISTINCT day, marketing_source FROM gf_tmp_earnings
      WHERE scope = 'scrapers') x
JOIN gf_tmp_earnings e
  ON e.scope = 'events' AND e.day = x.day AND e.marketing_source = x.marketing_source
WHERE EXISTS (SELECT 1 FROM gf_tmp_scopes WHERE scope = 'combined');

INSERT INTO gf_tmp_earnings (scope, day, marketing_source, operator, raw_e4)
SELECT 'combined', day, marketing_source, operator, raw_e4
FROM gf_tmp_earnings
WHERE scope = 'scrapers' AND EXISTS (SELECT 1 FROM gf_tmp_scopes WHERE scope = 'combined')
ON CONFLICT (scope, day, marketing_source, operator)
DO UPDATE SET raw_e4 = gf_tmp_earnings.raw_e4 + excluded.raw_e4;

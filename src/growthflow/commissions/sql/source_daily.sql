-- Rules 4 and 5, deals: once per (scope, day, marketing source), on the day's summed raw
-- earnings and clicks:
--   PPC       raw + rate x clicks
--   FIXED N   raw + N
--   Hybrid N  raw + N + rate x clicks
-- A source without a deal takes the `Default` row (FIXED 0 when there is none). A source with
-- clicks but no earnings still gets its row, in every scope. Negative results are kept.
INSERT INTO gf_tmp_activity
    (scope, day, marketing_source, raw_e4, clicks, operators, same_in_combined)
SELECT scope, day, marketing_source, SUM(raw_e4), 0, COUNT(*), 0
FROM gf_tmp_earnings
GROUP BY scope, day, marketing_source;

-- an events source-day without scraper amounts is the same source-day in the combined scope
UPDATE gf_tmp_activity SET same_in_combined = 1
WHERE scope = 'events' AND EXISTS (SELECT 1 FROM gf_tmp_scopes WHERE scope = 'combined')
  AND NOT EXISTS (
    SELECT 1 FROM gf_tmp_activity c
    WHERE c.scope = 'combined' AND c.day = gf_tmp_activity.day
      AND c.marketing_source = gf_tmp_activity.marketing_source);

INSERT INTO gf_tmp_activity
    (scope, day, marketing_source, raw_e4, clicks, operators, same_in_combined)
SELECT 'combined', day, marketing_source, raw_e4, 0, operators, 0
FROM gf_tmp_activity WHERE same_in_combined = 1;

INSERT INTO gf_tmp_activity
    (scope, day, marketing_source, raw_e4, clicks, operators, same_in_combined)
SELECT s.scope, c.day, c.marketing_source, 0, c.clicks, 0, 0
FROM gf_tmp_clicks c
CROSS JOIN (SELECT 'events' AS scope UNION ALL SELECT 'scrapers'
            UNION ALL SELECT 'combined') s
WHERE true
ON CONFLICT (scope, day, marketing_source) DO UPDATE SET clicks = excluded.clicks;

INSERT INTO gf_tmp_source_day
    (scope, day, marketing_source, deal, raw_e4, clicks, operators, same_in_combined,
     commission_cents)
WITH fallback AS (
    SELECT deal, deal_fee_e4, deal_per_click FROM commission_silver_deals
    WHERE marketing_source = 'DEFAULT'
    UNION ALL
    SELECT 'FIXED 0', 0, 0
    WHERE NOT EXISTS (SELECT 1 FROM commission_silver_deals WHERE marketing_source = 'DEFAULT')
)
SELECT s.scope, s.day, s.marketing_source,
       CASE WHEN d.deal IS NOT NULL THEN d.deal ELSE f.deal || ' (Default)' END,
       s.raw_e4, s.clicks, s.operators, s.same_in_combined,
       @cents(s.raw_e4 + COALESCE(d.deal_fee_e4, f.deal_fee_e4)
              + CASE WHEN COALESCE(d.deal_per_click, f.deal_per_click) = 1
                     THEN :rate_e4 * s.clicks ELSE 0 END)
FROM gf_tmp_activity s
LEFT JOIN commission_silver_deals d ON d.marketing_source = s.marketing_source
CROSS JOIN fallback f;

-- Source-days of scopes not written are dropped, unless the combined scope shares them.
DELETE FROM gf_tmp_source_day
WHERE same_in_combined = 0 AND scope NOT IN (SELECT scope FROM gf_tmp_scopes);

DELETE FROM commission_source_daily
WHERE date IN (SELECT day FROM gf_tmp_days) AND scope IN (SELECT scope FROM gf_tmp_scopes);

INSERT INTO commission_source_daily
    (scope, date, marketing_source, deal, raw_earnings, clicks, commission)
SELECT scope, day, marketing_source, deal, @money(@cents(raw_e4)), clicks,
       @money(commission_cents)
FROM gf_tmp_source_day
WHERE scope IN (SELECT scope FROM gf_tmp_scopes);

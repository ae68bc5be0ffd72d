-- Rule 7, operators: each source-day's commission (in cents) is shared among that
-- source-day's operators in proportion to their raw earnings (equally when these sum to 0),
-- by largest remainder, so the shares add up to the cent. A source-day with clicks but no
-- earnings goes to UNATTRIBUTED. So both gold tables sum to the same commission.
INSERT INTO gf_tmp_alloc (scope, day, marketing_source, operator, raw_e4, cents)
WITH parts AS (
    SELECT e.scope, e.day, e.marketing_source, e.operator, e.raw_e4,
           s.commission_cents AS c,
           SUM(e.raw_e4) OVER (PARTITION BY e.scope, e.day, e.marketing_source) AS total,
           COUNT(*) OVER (PARTITION BY e.scope, e.day, e.marketing_source) AS n
    FROM gf_tmp_earnings e
    JOIN gf_tmp_source_day s
      ON s.scope = e.scope AND s.day = e.day AND s.marketing_source = e.marketing_source
),
weighted AS (  -- weights over a positive denominator: c * w / d is the exact share
    SELECT scope, day, marketing_source, operator, raw_e4,
           @product(c, CASE WHEN total = 0 THEN 1 WHEN total > 0 THEN raw_e4
                            ELSE -raw_e4 END) AS p,
           CASE WHEN total = 0 THEN n ELSE abs(total) END AS d,
           c
    FROM parts
),
floored AS (
    SELECT scope, day, marketing_source, operator, raw_e4, c,
           @floordiv(p, d) AS base, @floormod(p, d) AS rem
    FROM weighted
),
ranked AS (
    SELECT scope, day, marketing_source, operator, raw_e4, base,
           c - SUM(base) OVER (PARTITION BY scope, day, marketing_source) AS leftover,
           ROW_NUMBER() OVER (PARTITION BY scope, day, marketing_source
                              ORDER BY rem DESC, operator) AS place
    FROM floored
)
SELECT scope, day, marketing_source, operator, raw_e4,
       base + CASE WHEN place <= leftover THEN 1 ELSE 0 END
FROM ranked
UNION ALL
SELECT s.scope, s.day, s.marketing_source, 'UNATTRIBUTED', 0, s.commission_cents
FROM gf_tmp_source_day s
WHERE NOT EXISTS (SELECT 1 FROM gf_tmp_earnings e WHERE e.scope = s.scope AND e.day = s.day
                  AND e.marketing_source = s.marketing_source);

DELETE FROM gf_commission_operator_daily WHERE day IN (SELECT day FROM gf_tmp_days);

INSERT INTO gf_commission_operator_daily (scope, day, operator, month, raw_e4, commission_cents)
SELECT scope, day, operator, @month(day), SUM(raw_e4), SUM(cents)
FROM gf_tmp_alloc
GROUP BY scope, day, operator;

-- Rule 7, operators: each source-day's commission (in cents) is shared among that
-- source-day's operators in proportion to their raw earnings (equally when these sum to 0);
-- a source-day with clicks but no earnings goes to UNATTRIBUTED. So both gold tables sum to
-- the same commission.
--
-- Shares are exact to the cent by running-sum rounding: with the operators in name order
-- (bytewise, the same on every database), W the running sum of their weights and D the sum
-- of all weights, an operator gets
--     floor(c * W / D) - floor(c * W_before / D)
-- cents of the commission c. The shares add up to c exactly, and each is within one cent of
-- its exact proportion c * w / D. Weights are the raw earnings, sign-flipped when the
-- source-day's total is negative (so D > 0), or 1 each when the total is 0.
DELETE FROM gf_commission_operator_daily
WHERE day IN (SELECT day FROM gf_tmp_days) AND scope IN (SELECT scope FROM gf_tmp_scopes);

-- An events source-day that is the same in the combined scope (see earnings.sql) is shared
-- once and its shares counted in both scopes.
INSERT INTO gf_commission_operator_daily (scope, day, operator, month, raw_e4, commission_cents)
SELECT x.scope, g.day, g.operator, @month(g.day), SUM(g.raw_e4), SUM(g.cents)
FROM (
    SELECT scope, same_in_combined, day, operator, SUM(raw_e4) AS raw_e4, SUM(cents) AS cents
    FROM (
        SELECT scope, same_in_combined, day, operator, raw_e4,
               @floordiv(@product(c, w_through), d) - @floordiv(@product(c, w_through - w), d)
                   AS cents
        FROM (
            SELECT e.scope, s.same_in_combined, e.day, e.operator, e.raw_e4,
                   s.commission_cents AS c,
                   CASE WHEN s.raw_e4 = 0 THEN s.operators ELSE abs(s.raw_e4) END AS d,
                   CASE WHEN s.raw_e4 = 0 THEN 1 WHEN s.raw_e4 > 0 THEN e.raw_e4
                        ELSE -e.raw_e4 END AS w,
                   SUM(CASE WHEN s.raw_e4 = 0 THEN 1 WHEN s.raw_e4 > 0 THEN e.raw_e4
                            ELSE -e.raw_e4 END)
                       OVER (PARTITION BY e.scope, e.day, e.marketing_source
                             ORDER BY @bytewise(e.operator) ROWS UNBOUNDED PRECEDING)
                       AS w_through
            FROM gf_tmp_earnings e
            JOIN gf_tmp_source_day s
              ON s.scope = e.scope AND s.day = e.day
             AND s.marketing_source = e.marketing_source
        ) weighted
        UNION ALL
        SELECT scope, 0, day, 'UNATTRIBUTED', 0, commission_cents
        FROM gf_tmp_source_day
        WHERE operators = 0
    ) shares
    GROUP BY scope, same_in_combined, day, operator
) g
JOIN gf_tmp_scopes x
  ON x.scope = g.scope OR (g.same_in_combined = 1 AND x.scope = 'combined')
GROUP BY x.scope, g.day, g.operator;

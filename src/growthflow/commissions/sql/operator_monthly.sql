-- Rule 7, months (YYYY-MM): the operator shares of every day of the months recomputed.
DELETE FROM commission_operator_monthly
WHERE month IN (SELECT DISTINCT @month(day) FROM gf_tmp_days)
  AND scope IN (SELECT scope FROM gf_tmp_scopes);

INSERT INTO commission_operator_monthly (scope, month, operator, raw_earnings, commission)
SELECT scope, month, operator, @money(@cents(SUM(raw_e4))), @money(SUM(commission_cents))
FROM gf_commission_operator_daily
WHERE month IN (SELECT DISTINCT @month(day) FROM gf_tmp_days)
  AND scope IN (SELECT scope FROM gf_tmp_scopes)
GROUP BY scope, month, operator;

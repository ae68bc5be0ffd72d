-- Rule 10, scrapers: how a running total becomes an amount.
--   first reading of a counter        baseline, no amount
--   total below the previous reading  reset: the amount is the new total
--   previous reading yesterday        delta = total - previous
--   previous reading older            delta over N days, all booked on the new reading's day
UPDATE gf_commission_readings SET previous_day = (
    SELECT MAX(p.day) FROM gf_commission_readings p
    WHERE p.marketing_source = gf_commission_readings.marketing_source
      AND p.operator = gf_commission_readings.operator
      AND p.day < gf_commission_readings.day)
WHERE day IN (SELECT day FROM gf_tmp_days);

UPDATE gf_commission_readings SET previous_total_e4 = (
    SELECT p.total_e4 FROM gf_commission_readings p
    WHERE p.marketing_source = gf_commission_readings.marketing_source
      AND p.operator = gf_commission_readings.operator
      AND p.day = gf_commission_readings.previous_day)
WHERE day IN (SELECT day FROM gf_tmp_days);

UPDATE gf_commission_readings SET
    amount_e4 = CASE WHEN previous_day IS NULL THEN NULL
                     WHEN total_e4 < previous_total_e4 THEN total_e4
                     ELSE total_e4 - previous_total_e4 END,
    rule = CASE WHEN previous_day IS NULL THEN 'baseline'
                WHEN total_e4 < previous_total_e4 THEN 'reset'
                WHEN @days_between(day, previous_day) = 1 THEN 'delta'
                ELSE 'delta over ' || CAST(@days_between(day, previous_day) AS TEXT) || ' days' END
WHERE day IN (SELECT day FROM gf_tmp_days);

DELETE FROM scraper_daily_amounts WHERE date IN (SELECT day FROM gf_tmp_days);

INSERT INTO scraper_daily_amounts
    (date, marketing_source, operator, previous_date, previous_total, total, amount, rule)
SELECT r.day, r.marketing_source, r.operator, r.previous_day,
       @money(@cents(r.previous_total_e4)), @money(@cents(r.total_e4)),
       @money(@cents(r.amount_e4)), r.rule
FROM gf_commission_readings r JOIN gf_tmp_days d ON d.day = r.day;

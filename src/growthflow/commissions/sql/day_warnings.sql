-- Warnings about the days recomputed: the rows are kept, the warning says what to look at.
DELETE FROM commission_warnings
WHERE origin = 'day' AND date IN (SELECT day FROM gf_tmp_days);

INSERT INTO commission_warnings (kind, feed, date, subject, rows, file_id, line, origin)
SELECT 'operator not in the mapping', feed, day, operator, COUNT(*), MIN(file_id),
       MIN(line), 'day'
FROM (
    SELECT e.feed, e.day, e.operator, e.file_id, e.line
    FROM commission_silver_earnings e JOIN gf_tmp_days d ON d.day = e.day
    WHERE NOT EXISTS (SELECT 1 FROM gf_tmp_operator_keys k WHERE k.key = e.operator_key)
    UNION ALL
    SELECT t.feed, t.day, t.operator, t.file_id, t.line
    FROM commission_silver_running_totals t JOIN gf_tmp_days d ON d.day = t.day
    WHERE NOT EXISTS (SELECT 1 FROM gf_tmp_operator_keys k WHERE k.key = t.operator_key)
) unmapped
GROUP BY feed, day, operator;

INSERT INTO commission_warnings (kind, feed, date, subject, rows, file_id, line, origin)
SELECT 'voluum brand not in the mapping: clicks left out', c.feed, c.day,
       c.voluum_brand || ' (' || CAST(SUM(c.clicks) AS TEXT) || ' clicks)', COUNT(*),
       MIN(c.file_id), MIN(c.line), 'day'
FROM commission_silver_clicks c JOIN gf_tmp_days d ON d.day = c.day
WHERE NOT EXISTS (SELECT 1 FROM commission_silver_brand_map b
                  WHERE b.voluum_brand_key = c.voluum_brand_key)
GROUP BY c.feed, c.day, c.voluum_brand;

INSERT INTO commission_warnings (kind, feed, date, subject, rows, file_id, line, origin)
SELECT 'several readings of one counter in a day: the last row wins', f.feed, r.day,
       r.marketing_source || ' / ' || r.operator, r.readings, r.file_id, r.line, 'day'
FROM gf_commission_readings r
JOIN gf_tmp_days d ON d.day = r.day
JOIN commission_files f ON f.file_id = r.file_id
WHERE r.readings > 1;

INSERT INTO commission_warnings (kind, feed, date, subject, rows, file_id, line, origin)
SELECT 'counter reset: the amount is the new total', f.feed, r.day,
       r.marketing_source || ' / ' || r.operator, 1, r.file_id, r.line, 'day'
FROM gf_commission_readings r
JOIN gf_tmp_days d ON d.day = r.day
JOIN commission_files f ON f.file_id = r.file_id
WHERE r.rule = 'reset';

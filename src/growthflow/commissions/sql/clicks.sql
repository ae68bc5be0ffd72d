-- Rule 3, clicks: voluum clicks per (day, brand) become clicks per (day, marketing source)
-- through the brand mapping, summed. Brands missing from the mapping are left out (warning).
INSERT INTO gf_tmp_clicks (day, marketing_source, clicks)
SELECT c.day, b.marketing_source, SUM(c.clicks)
FROM commission_silver_clicks c
JOIN gf_tmp_days d ON d.day = c.day
JOIN commission_silver_brand_map b ON b.voluum_brand_key = c.voluum_brand_key
GROUP BY c.day, b.marketing_source;

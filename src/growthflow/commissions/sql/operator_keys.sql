-- Rule 6, operators. A name maps to std_operator when it equals a `variants` value, or that
-- variant followed by a space and the mapping's country ("Draftkings US" -> DraftkingsLOLUS).
-- Names compare case-insensitively with whitespace collapsed (the *_key columns). An exact
-- variant wins over variant + country.
INSERT INTO gf_tmp_operator_keys (key, std_operator)
SELECT key, MIN(std_operator)
FROM (
    SELECT key, std_operator, priority, MIN(priority) OVER (PARTITION BY key) AS best
    FROM (
        SELECT variants_key AS key, std_operator, 0 AS priority
        FROM commission_silver_operator_map
        UNION ALL
        SELECT variants_key || ' ' || lower(country), std_operator, 1
        FROM commission_silver_operator_map
        WHERE country IS NOT NULL AND country <> ''
    ) candidates
) ranked
WHERE priority = best
GROUP BY key;

-- The rule of the existing AWS solution, as a baseline to compare the detection with (evaluation, benchmark).
--
-- Dialect: Athena engine v3 (Trino), run locally on DuckDB through detection/query.py, like features.sql.
-- The rule, per session over the window: requests served (2xx) with more than 1024 bytes; rate = distinct
-- (address, URI) pairs per second between the session's first and last such request; sessions of at least 30 s;
-- score = rate / median rate of those sessions (exact; the solution's query takes an approximate one) + 1 if more
-- than one address + 1 if more than one user agent + 1 if more than one referer; flagged above 2.2.
--
-- parameters: window_start, window_end, window_start, window_end
-- partition: dt
--   Same window and partition predicates as features.sql.
WITH
windowed AS (
  SELECT
    split_part(split_part(cs_uri_stem, '/', 2), '.', 1) AS session_id,
    "timestamp" AS ts, c_ip, cs_uri_stem, cs_user_agent, cs_referer
  FROM logs
  WHERE "timestamp" >= CAST(? AS DOUBLE) AND "timestamp" < CAST(? AS DOUBLE)
    AND dt BETWEEN date_format(from_unixtime(CAST(? AS DOUBLE) - 900), '%Y/%m/%d/%H')
               AND date_format(from_unixtime(CAST(? AS DOUBLE) + 900), '%Y/%m/%d/%H')
    AND sc_status BETWEEN 200 AND 299
    AND sc_bytes > 1024
),
sessions AS (
  SELECT
    session_id,
    count(DISTINCT c_ip || ' ' || cs_uri_stem) AS pairs,
    max(ts) - min(ts) AS seconds,
    count(DISTINCT c_ip) AS ips,
    count(DISTINCT cs_user_agent) AS user_agents,
    count(DISTINCT cs_referer) AS referers
  FROM windowed
  GROUP BY session_id
),
rated AS (
  SELECT sessions.*, pairs / seconds AS rate
  FROM sessions
  WHERE seconds >= 30
),
ranked AS (
  SELECT rated.*, row_number() OVER (ORDER BY rate, session_id) AS n, count(*) OVER () AS total
  FROM rated
),
centred AS (
  -- the exact median of the rates (the middle one, or the mean of the middle two), so that one window always gives
  -- the same verdicts: an approximate percentile depends on the order the engine merges its partial results in
  SELECT
    ranked.*,
    avg(CASE WHEN n IN (CAST(floor((total + 1) / 2.0) AS BIGINT), CAST(ceil((total + 1) / 2.0) AS BIGINT))
             THEN rate END) OVER () AS median_rate
  FROM ranked
),
scored AS (
  SELECT
    centred.*,
    rate / median_rate
      + CASE WHEN ips > 1 THEN 1 ELSE 0 END
      + CASE WHEN user_agents > 1 THEN 1 ELSE 0 END
      + CASE WHEN referers > 1 THEN 1 ELSE 0 END AS score
  FROM centred
)
SELECT session_id, score, rate, pairs, seconds, ips, user_agents, referers, score > 2.2 AS flagged
FROM scored

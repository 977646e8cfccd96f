-- Per-session features of CloudFront real-time log records over one time window.
--
-- Dialect: Athena engine v3 (Trino). Run as is on Athena; detection/query.py transpiles it to DuckDB with sqlglot
-- for local runs. One statement and one scan of `logs`: each step reads only the step before it (no CTE is read
-- twice, Athena would evaluate it twice), so neither engine reads the logs more than once, and the one big
-- aggregation (`parts`) shrinks the rows about twentyfold before anything else happens.
--
-- parameters: window_start, window_end, window_start, window_end, shared_egress_asns, location_free_asns
--   Positional (`?`): epoch seconds, end exclusive: the window predicate, then the partition predicate, both in
--   `windowed`; then, from the network registry, as text with each ASN between commas (',36183,13335,'): the
--   shared-egress networks (privacy relays, secure web gateways) and the location-free ones (in-flight, satellite,
--   gateways, carriers, hosting, VPN). Athena ExecutionParameters: ["<start>", "<end>", "<start>", "<end>",
--   "',13335,36183,'", "',7155,14593,'"].
-- partition: dt
--   `logs` has one column per real-time log field, snake_case (cs-uri-stem -> cs_uri_stem), and on Athena the
--   projected partition `dt` = the Firehose hour folder 'yyyy/MM/dd/HH' (UTC); the partition predicate reads every
--   hour folder that can hold a record of the window (Firehose buffers up to 900 s). Locally the input layer prunes
--   hour folders itself and its view has no `dt`: query.py drops that one predicate.
--
-- Counted: requests the edge served (2xx) for media: playlists (.m3u8, .mpd) and segments (.ts, .m4s, .mp4, .m4a,
-- .m4v, .aac, .cmfv, .cmfa, .mp3). A denied request (403 from the edge function, 404...) carries a session id that
-- anyone can type, so it never counts towards a session's features; it only counts as a record.
--
-- URL contract: /<session_id>.<jwt>/<asset path>. session_id is the first path segment up to the first '.' (a
-- plain split, no base64 decoding). The asset path's first directory is the channel (the token's path scope) and
-- the digits just before the extension of a segment's file name are its sequence number (seg_123.ts,
-- chunk-00042.m4s); the renditions of a channel share sequence numbers (HLS media sequence, DASH $Number$), so a
-- player fetches each number once whatever its rendition switches, and N players, or one player fetching N
-- renditions, fetch it N times.
WITH
windowed AS (
  -- The window: the one time predicate of the query.
  SELECT "timestamp" AS ts, c_ip, asn, c_country, cs_user_agent, sc_bytes, sc_status, cmcd_session_id,
         cmcd_playback_rate, split(cs_uri_stem, '/') AS path
  FROM logs
  WHERE "timestamp" >= CAST(? AS DOUBLE) AND "timestamp" < CAST(? AS DOUBLE)
    AND dt BETWEEN date_format(from_unixtime(CAST(? AS DOUBLE) - 900), '%Y/%m/%d/%H')
               AND date_format(from_unixtime(CAST(? AS DOUBLE) + 900), '%Y/%m/%d/%H')
),
requests AS (
  -- path = ['', '<session_id>.<jwt>', '<channel>', ..., '<file>']
  SELECT
    token, ts, c_ip, asn, c_country, cs_user_agent, sc_bytes, channel, file, cmcd_session_id, cmcd_playback_rate,
    sc_status BETWEEN 200 AND 299 AND depth >= 4 AND (playlist OR segment) AS media,
    segment
  FROM (
    SELECT
      token, ts, c_ip, asn, c_country, cs_user_agent, sc_bytes, sc_status, channel, file, depth, cmcd_session_id,
      cmcd_playback_rate,
      file LIKE '%.m3u8' OR file LIKE '%.mpd' AS playlist,
      CASE WHEN file LIKE '%.ts' THEN true  -- most segments: one test
           WHEN file LIKE '%.m3u8' THEN false  -- most other requests: live playlist refreshes
           ELSE file LIKE '%.m4s' OR file LIKE '%.mp4' OR file LIKE '%.aac' OR file LIKE '%.m4a' OR file LIKE '%.m4v'
                OR file LIKE '%.cmfv' OR file LIKE '%.cmfa' OR file LIKE '%.mp3' END AS segment
    FROM (
      SELECT
        ts, c_ip, asn, c_country, cs_user_agent, sc_bytes, sc_status, cmcd_session_id, cmcd_playback_rate,
        element_at(path, 2) AS token,
        -- decoded before anything is classified: seg_00042.t%73 is a segment (the origin decodes it too); a malformed
        -- escape stays as it came, and only names holding a % pay for the decoding
        CASE WHEN strpos(element_at(path, 3), '%') > 0
             THEN coalesce(try(url_decode(element_at(path, 3))), element_at(path, 3))
             ELSE element_at(path, 3) END AS channel,
        CASE WHEN strpos(element_at(path, -1), '%') > 0
             THEN coalesce(try(url_decode(element_at(path, -1))), element_at(path, -1))
             ELSE element_at(path, -1) END AS file,
        cardinality(path) AS depth
      FROM windowed
    )
  )
),
parts AS (
  -- The one big aggregation, over plain keys only: token x minute x address x user agent x channel x CMCD playback
  -- session (and whether the records are served media requests); the CMCD session id is null for players that send
  -- none, so it adds groups only where several players share an address and a user agent. Strings in the keys cost far less than string minimum and maximum
  -- aggregates over ten million rows. The key is the whole token segment, not the session id: cutting the session
  -- id out of every record costs more than hashing the longer key, and the session id is cut once per part instead.
  SELECT
    token, media, CAST(floor(ts / 60) AS BIGINT) AS minute, c_ip, cs_user_agent AS user_agent, channel,
    cmcd_session_id AS cmcd_sid,
    count(*) AS records,
    count_if(segment) AS segments,
    sum(sc_bytes) AS bytes,
    min(ts) AS first_seen,
    max(ts) AS last_seen,
    min(seq) AS seq_min,
    max(seq) AS seq_max,
    max(asn) AS asn,
    max(c_country) AS country,
    max(cmcd_playback_rate) AS playback_rate
  FROM (
    SELECT requests.*,
           CASE WHEN segment THEN try_cast(regexp_extract(file, '(\d+)\.[0-9A-Za-z]+$', 1) AS BIGINT) END AS seq
    FROM requests
  )
  GROUP BY token, media, CAST(floor(ts / 60) AS BIGINT), c_ip, cs_user_agent, channel, cmcd_session_id
),
cells AS (
  -- Two kinds of rows from the parts, in one aggregation (each part comes twice, by_cell true then false):
  -- - cells: session x minute x address, served or not (a few parts each);
  -- - address tokens, for served media requests only: session x address x token, with what `facets` needs of an
  --   address. The user agents and the tokens are long and only needed per address: they are here (about one row
  --   per address), not on every cell, and a token is a key, so each comes once without lists of lists.
  SELECT
    by_cell, session_id, media,
    CASE WHEN by_cell THEN minute END AS minute,
    c_ip,
    CASE WHEN NOT by_cell THEN token END AS token,
    sum(records) AS records,
    sum(segments) AS segments,
    sum(bytes) AS bytes,
    min(first_seen) AS first_seen,
    max(last_seen) AS last_seen,
    min(seq_min) AS seq_min,
    max(seq_max) AS seq_max,
    min(CASE WHEN segments > 0 THEN channel END) AS channel_min,
    max(CASE WHEN segments > 0 THEN channel END) AS channel_max,
    max(asn) AS asn,
    max(country) AS country,
    max(playback_rate) FILTER (WHERE by_cell) AS playback_rate,
    min(user_agent) FILTER (WHERE NOT by_cell) AS ua_min,
    max(user_agent) FILTER (WHERE NOT by_cell) AS ua_max,
    -- CMCD playback sessions of the cell (the first and last in order: all of them, unless one address carried
    -- more than two), the time each was seen in, summed, and the span they were seen in together
    min(cmcd_sid) FILTER (WHERE by_cell) AS sid_min,
    max(cmcd_sid) FILTER (WHERE by_cell) AS sid_max,
    sum(last_seen - first_seen) FILTER (WHERE by_cell AND cmcd_sid IS NOT NULL) AS sid_seconds,
    min(first_seen) FILTER (WHERE by_cell AND cmcd_sid IS NOT NULL) AS sid_first,
    max(last_seen) FILTER (WHERE by_cell AND cmcd_sid IS NOT NULL) AS sid_last
  FROM (
    SELECT
      parts.*,
      CASE WHEN strpos(token, '.') > 0 THEN substr(token, 1, strpos(token, '.') - 1) ELSE token END AS session_id
    FROM parts
  ) CROSS JOIN UNNEST(ARRAY[true, false]) AS k(by_cell)
  WHERE by_cell OR media
  GROUP BY by_cell, session_id, media, CASE WHEN by_cell THEN minute END, c_ip, CASE WHEN NOT by_cell THEN token END
),
served AS (
  -- Only served media requests keep their attributes; the other records only count as records of their session.
  SELECT
    by_cell, session_id, records, token,
    CASE WHEN media THEN records ELSE 0 END AS requests,
    CASE WHEN media THEN segments ELSE 0 END AS segments,
    CASE WHEN media THEN minute END AS minute,
    CASE WHEN media THEN c_ip END AS c_ip,
    CASE WHEN media THEN bytes END AS bytes,
    CASE WHEN media THEN first_seen END AS first_seen,
    CASE WHEN media THEN last_seen END AS last_seen,
    CASE WHEN media THEN seq_max - seq_min + 1 END AS seq_span,
    CASE WHEN media THEN seq_min END AS seq_min,
    CASE WHEN media THEN seq_max END AS seq_max,
    CASE WHEN media THEN channel_min END AS channel_min,
    CASE WHEN media THEN channel_max END AS channel_max,
    CASE WHEN media THEN asn END AS asn,
    CASE WHEN media THEN country END AS country,
    CASE WHEN media THEN ua_min END AS ua_min,
    CASE WHEN media THEN ua_max END AS ua_max,
    CASE WHEN media THEN playback_rate END AS playback_rate,
    CASE WHEN media THEN sid_min END AS sid_min,
    CASE WHEN media THEN sid_max END AS sid_max,
    CASE WHEN media THEN sid_seconds END AS sid_seconds,
    CASE WHEN media THEN sid_first END AS sid_first,
    CASE WHEN media THEN sid_last END AS sid_last,
    CASE WHEN media THEN split_part(lower(c_ip), '::', 1) END AS v6_head,
    CASE WHEN media AND strpos(c_ip, '::') > 0 THEN split_part(lower(c_ip), '::', 2) ELSE '' END AS v6_tail
  FROM cells
),
address_groups AS (
  SELECT
    served.*,
    -- an address of a shared-egress network is one place: a relay or gateway spreads one viewer over several
    -- addresses (and networks) at once and in turn, so they count as one prefix and one network at once
    strpos(?, ',' || CAST(asn AS VARCHAR) || ',') > 0 AS shared_egress,
    -- where an address of a location-free network geolocates says where its gateway is, not the viewer: such a
    -- country is no place for "several countries at once" (it stays in the session's countries, and travel
    -- leaves it out in the policy)
    CASE WHEN strpos(?, ',' || CAST(asn AS VARCHAR) || ',') > 0 THEN NULL ELSE country END AS place_country,
    CASE WHEN v6_head = '' THEN 0 ELSE length(v6_head) - length(replace(v6_head, ':', '')) + 1 END AS v6_head_n,
    CASE WHEN v6_tail = '' THEN 0 ELSE length(v6_tail) - length(replace(v6_tail, ':', '')) + 1 END AS v6_tail_n
  FROM served
),
addressed AS (
  SELECT
    address_groups.*,
    -- The network prefix: /24 for IPv4, /48 for IPv6 (the first three groups, '::' expanded, leading zeros dropped).
    CASE WHEN shared_egress THEN -1 ELSE asn END AS network,
    CASE
      WHEN c_ip IS NULL THEN NULL
      WHEN shared_egress THEN 'shared-egress'
      WHEN strpos(c_ip, ':') = 0 THEN
        split_part(c_ip, '.', 1) || '.' || split_part(c_ip, '.', 2) || '.' || split_part(c_ip, '.', 3) || '.0/24'
      ELSE
        coalesce(nullif(trim(LEADING '0' FROM
          CASE WHEN v6_head_n >= 1 THEN split_part(v6_head, ':', 1)
               WHEN 1 <= 8 - v6_tail_n THEN '0'
               ELSE split_part(v6_tail, ':', 1 - 8 + v6_tail_n) END), ''), '0')
        || ':' ||
        coalesce(nullif(trim(LEADING '0' FROM
          CASE WHEN v6_head_n >= 2 THEN split_part(v6_head, ':', 2)
               WHEN 2 <= 8 - v6_tail_n THEN '0'
               ELSE split_part(v6_tail, ':', 2 - 8 + v6_tail_n) END), ''), '0')
        || ':' ||
        coalesce(nullif(trim(LEADING '0' FROM
          CASE WHEN v6_head_n >= 3 THEN split_part(v6_head, ':', 3)
               WHEN 3 <= 8 - v6_tail_n THEN '0'
               ELSE split_part(v6_tail, ':', 3 - 8 + v6_tail_n) END), ''), '0')
        || '::/48'
    END AS prefix
  FROM address_groups
),
facets AS (
  -- Two groupings in one aggregation: the cells by minute (what happened at once) and the address tokens by address
  -- (what the session used over the window). An address's prefix, network and country are its own, so the
  -- session's distinct addresses, prefixes, networks and countries are counted over address rows, without lists of
  -- lists. Each facet aggregates only the columns `sessions` reads from it (the FILTERs).
  SELECT
    CASE WHEN by_cell THEN 'minute' ELSE 'address' END AS facet,
    session_id,
    CASE WHEN by_cell THEN minute END AS minute,
    CASE WHEN NOT by_cell THEN c_ip END AS c_ip,
    sum(records) AS records,
    sum(requests) AS requests,
    sum(segments) AS segments,
    sum(bytes) FILTER (WHERE by_cell) AS bytes,
    min(first_seen) FILTER (WHERE NOT by_cell) AS first_seen,
    max(last_seen) FILTER (WHERE NOT by_cell) AS last_seen,
    max(prefix) FILTER (WHERE NOT by_cell) AS prefix,
    max(asn) FILTER (WHERE NOT by_cell) AS asn,
    max(country) FILTER (WHERE NOT by_cell) AS country,
    min(channel_min) AS channel_lo,
    max(channel_max) AS channel_hi,
    min(ua_min) FILTER (WHERE NOT by_cell) AS ua_lo,
    max(ua_max) FILTER (WHERE NOT by_cell) AS ua_hi,
    array_agg(token) FILTER (WHERE NOT by_cell AND token IS NOT NULL) AS tokens,
    count(c_ip) FILTER (WHERE by_cell) AS ips,
    cardinality(array_distinct(array_agg(prefix) FILTER (WHERE by_cell AND prefix IS NOT NULL))) AS prefixes,
    cardinality(array_distinct(array_agg(network) FILTER (WHERE by_cell AND network IS NOT NULL))) AS asns,
    cardinality(array_distinct(array_agg(place_country) FILTER (WHERE by_cell AND place_country IS NOT NULL)))
      AS countries,
    -- the media the session advanced through in the minute, in segments, when every address that fetched segments
    -- fetched one and the same channel (a minute of zapping or multi-view is left out: channels are not
    -- comparable): the least of its segment fetches, of the sequence numbers each address spanned, summed, and of
    -- the numbers the session spanned. Retries, rendition switches and byte ranges add fetches, not numbers;
    -- players at the same position (the live edge) span one range; players at different positions of a title add
    -- their spans; numbers that are times ($Time$) or jumps (seeks) make spans large and leave the fetches.
    CASE WHEN count(c_ip) FILTER (WHERE segments > 0 AND channel_min <> channel_max) = 0
              AND min(channel_min) = max(channel_max) AND min(seq_min) IS NOT NULL
         THEN least(sum(segments), sum(seq_span) FILTER (WHERE segments > 0), max(seq_max) - min(seq_min) + 1)
         END AS advance,
    -- the fastest playback rate a player reported (CMCD pr) in the minute: a viewer watching at 1.5x advances 1.5x
    max(playback_rate) FILTER (WHERE by_cell) AS playback_rate,
    -- renditions fetched at once by one address: its segment fetches per sequence number of its one channel
    max(CAST(segments AS DOUBLE) / seq_span) FILTER (WHERE seq_span >= 3 AND channel_min = channel_max)
      AS renditions_at_once,
    -- the same segments fetched from more than one address: fetches beyond one per sequence number, in a minute
    -- where several addresses fetched segments of one and the same channel
    CASE WHEN count(c_ip) FILTER (WHERE segments > 0) > 1
              AND count(c_ip) FILTER (WHERE segments > 0 AND channel_min <> channel_max) = 0
              AND min(channel_min) = max(channel_max)
         THEN greatest(sum(segments) FILTER (WHERE seq_min IS NOT NULL) - (max(seq_max) - min(seq_min) + 1), 0)
         ELSE 0 END AS shared_segments,
    -- channels played from places of their own: addresses that fetched one channel only, and not all the same one
    min(channel_min) FILTER (WHERE channel_min = channel_max)
      <> max(channel_max) FILTER (WHERE channel_min = channel_max) AS channels_apart,
    -- CMCD playback sessions of one and the same channel in the minute (a minute of zapping or multi-view is left
    -- out: several players of several channels may be one viewer's multi-view), and how long they played at the
    -- same time: the seconds each was seen, summed, beyond the span they were seen in together (a player restarted
    -- or handed over to a cast device overlaps for seconds; two players for most of the minute)
    CASE WHEN count(c_ip) FILTER (WHERE segments > 0 AND channel_min <> channel_max) = 0
              AND min(channel_min) = max(channel_max)
         THEN cardinality(array_distinct(array_agg(sid_min) FILTER (WHERE by_cell AND sid_min IS NOT NULL)
                                         || array_agg(sid_max) FILTER (WHERE by_cell AND sid_max IS NOT NULL)))
         END AS cmcd_sessions,
    sum(sid_seconds) FILTER (WHERE by_cell) - (max(sid_last) FILTER (WHERE by_cell) - min(sid_first) FILTER (WHERE by_cell))
      AS cmcd_overlap
  FROM addressed
  GROUP BY by_cell, session_id, CASE WHEN by_cell THEN minute END, CASE WHEN NOT by_cell THEN c_ip END
),
sessions AS (
  SELECT
    session_id,
    sum(records) FILTER (WHERE facet = 'minute') AS records,
    sum(requests) FILTER (WHERE facet = 'minute') AS requests,
    sum(bytes) FILTER (WHERE facet = 'minute') AS bytes,
    sum(segments) FILTER (WHERE facet = 'minute') AS segments,
    min(first_seen) AS first_seen,
    max(last_seen) AS last_seen,
    count(c_ip) FILTER (WHERE facet = 'address') AS ips,
    cardinality(array_distinct(array_agg(prefix) FILTER (WHERE facet = 'address' AND prefix IS NOT NULL)))
      AS prefixes,
    array_sort(array_distinct(array_agg(asn) FILTER (WHERE facet = 'address' AND asn IS NOT NULL))) AS asn_list,
    array_sort(array_distinct(array_agg(country) FILTER (WHERE facet = 'address' AND country IS NOT NULL)))
      AS country_list,
    -- channels and user agents of each address: the first and last in alphabetical order (all of them, unless an
    -- address used more than two)
    array_sort(array_distinct(array_agg(channel_lo) FILTER (WHERE facet = 'address' AND channel_lo IS NOT NULL)
                              || array_agg(channel_hi) FILTER (WHERE facet = 'address' AND channel_hi IS NOT NULL)))
      AS channel_list,
    array_sort(array_distinct(array_agg(ua_lo) FILTER (WHERE facet = 'address' AND ua_lo IS NOT NULL)
                              || array_agg(ua_hi) FILTER (WHERE facet = 'address' AND ua_hi IS NOT NULL)))
      AS user_agent_list,
    -- where, when, in which network and by which user agents each address was served, for travel
    array_agg(CAST(ROW(first_seen, last_seen, country, requests, asn, ua_lo, ua_hi)
                   AS ROW(first_seen DOUBLE, last_seen DOUBLE, country VARCHAR, requests BIGINT, asn BIGINT,
                          ua_lo VARCHAR, ua_hi VARCHAR)))
      FILTER (WHERE facet = 'address' AND country IS NOT NULL) AS country_cells,
    slice(array_sort(array_agg(c_ip) FILTER (WHERE facet = 'address' AND c_ip IS NOT NULL)), 1, 50) AS ip_list,
    -- the channel of the address that fetched the most segments of one channel; a tie goes to the alphabetically
    -- last channel (the key orders by segments, then by name), not to whichever row the engine happened to meet last
    max_by(channel_lo, lpad(CAST(segments AS VARCHAR), 20, '0') || channel_lo)
      FILTER (WHERE facet = 'address' AND segments > 0 AND channel_lo = channel_hi) AS main_channel,
    count(minute) FILTER (WHERE facet = 'minute') AS active_minutes,
    max(ips) FILTER (WHERE facet = 'minute') AS max_ips_per_minute,
    max(prefixes) FILTER (WHERE facet = 'minute') AS max_prefixes_per_minute,
    max(asns) FILTER (WHERE facet = 'minute') AS max_asns_per_minute,
    max(countries) FILTER (WHERE facet = 'minute') AS max_countries_per_minute,
    max(renditions_at_once) FILTER (WHERE facet = 'minute') AS max_renditions_at_once,
    sum(shared_segments) FILTER (WHERE facet = 'minute') AS shared_segments,
    max(cmcd_sessions) FILTER (WHERE facet = 'minute') AS max_cmcd_sessions,
    -- one row per active minute, in order
    array_sort(array_agg(CAST(
      ROW(minute, segments, advance, ips, prefixes, asns, countries, coalesce(renditions_at_once, 0),
          shared_segments, coalesce(channels_apart, false), coalesce(cmcd_sessions, 0),
          coalesce(CAST(cmcd_overlap AS DOUBLE), 0), playback_rate)
      AS ROW(minute BIGINT, segments BIGINT, advance BIGINT, ips BIGINT, prefixes BIGINT, asns BIGINT,
             countries BIGINT, renditions_at_once DOUBLE, shared_segments BIGINT, channels_apart BOOLEAN,
             cmcd_sessions BIGINT, cmcd_overlap DOUBLE, playback_rate DOUBLE)))
      FILTER (WHERE facet = 'minute' AND minute IS NOT NULL)) AS per_minute,
    count(*) FILTER (WHERE facet = 'minute' AND channels_apart) AS channels_apart_minutes,
    slice(array_sort(array_distinct(flatten(
      array_agg(tokens) FILTER (WHERE facet = 'address' AND tokens IS NOT NULL)))), 1, 16) AS tokens
  FROM facets
  GROUP BY session_id
)
SELECT
  session_id,
  CAST(records AS BIGINT) AS records,  -- every record of the window with this session id, served or not
  CAST(requests AS BIGINT) AS requests,  -- served (2xx) media requests
  CAST(bytes AS BIGINT) AS bytes,
  CAST(segments AS BIGINT) AS segments,
  first_seen,
  last_seen,
  ips AS distinct_ips,
  prefixes AS distinct_prefixes,
  coalesce(cardinality(asn_list), 0) AS distinct_asns,
  coalesce(cardinality(country_list), 0) AS distinct_countries,
  coalesce(cardinality(channel_list), 0) AS distinct_channels,
  coalesce(cardinality(user_agent_list), 0) AS distinct_user_agents,
  active_minutes,
  max_ips_per_minute,
  max_prefixes_per_minute,
  max_asns_per_minute,
  max_countries_per_minute,
  max_renditions_at_once,
  CAST(shared_segments AS BIGINT) AS shared_segments,
  coalesce(max_cmcd_sessions, 0) AS max_cmcd_sessions_per_minute,
  channels_apart_minutes,
  main_channel,
  asn_list AS asns,
  country_list AS countries,
  channel_list AS channels,
  user_agent_list AS user_agents,
  ip_list AS ips,
  -- (first_seen, last_seen, country, requests, asn, ua_lo, ua_hi) of each address, for travel: only when the session moved (in order,
  -- so that one window always gives the same rows)
  CASE WHEN coalesce(cardinality(country_list), 0) > 1 THEN array_sort(country_cells) END AS country_cells,
  per_minute,
  -- the distinct token segments (<session_id>.<jwt>) of the session's served media requests, the first 16 in
  -- alphabetical order (a session normally has one or two): each token's exp bounds the session's revocation
  tokens
FROM sessions

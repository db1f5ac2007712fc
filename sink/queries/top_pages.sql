-- Top pages of one tenant by URL pattern over the last {days} days: the URL path with numeric and hex/UUID-like
-- segments replaced by :id (so /orders/123 and /orders/456 are one pattern), filtered by a LIKE pattern on the
-- path ('%' for all, '/docs/%' for the docs).
-- Parameters: {tenant:String}, {days:UInt32}, {path_like:String}.
SELECT
    replaceRegexpAll(replaceRegexpAll(path(url), '/([0-9]+|[0-9a-fA-F-]{16,})(/|$)', '/:id\\2'),
                     '/([0-9]+|[0-9a-fA-F-]{16,})(/|$)', '/:id\\2') AS pattern,
    count() AS views,
    uniqExact(if(anonymous_id != '', anonymous_id, user_id)) AS visitors,
    uniqExactIf(email, email != '') AS leads,
    any(url) AS sample_url
FROM signals_latest
WHERE tenant = {tenant:String} AND type = 'page' AND event_time >= now() - {days:UInt32} * 86400
  AND path(url) LIKE {path_like:String}
GROUP BY pattern
ORDER BY views DESC, pattern

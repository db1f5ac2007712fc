-- Intent: the leads of one tenant that visited pages whose path matches {path_like} (a LIKE pattern: '/pricing%'
-- for pricing, '%demo%' for demo pages) in the last {days} days, most visits first: visits, distinct pages, the
-- last visit, and how many of the visits were made while still anonymous (the cold history of a visitor id that
-- identities_latest links to the lead). The path is page_path, else the path of the URL (rows loaded before the
-- contract's fields).
-- Parameters: {tenant:String}, {days:UInt32}, {path_like:String}.
SELECT
    email,
    count() AS visits,
    uniqExact(page) AS pages,
    max(event_time) AS last_visit,
    countIf(linked = 0) AS anonymous_visits,
    arraySlice(arraySort(groupUniqArray(page)), 1, 10) AS sample_pages
FROM
(
    SELECT email, event_time, if(page_path != '', page_path, path(url)) AS page, toUInt8(1) AS linked
    FROM lead_signals FINAL
    WHERE tenant = {tenant:String} AND type = 'page' AND event_time >= now() - {days:UInt32} * 86400
    UNION ALL
    SELECT email, event_time, page, toUInt8(0) AS linked
    FROM
    (
        SELECT if(anonymous_id != '', 'anonymous', 'user') AS id_kind, visitor AS id, event_time,
               if(page_path != '', page_path, path(url)) AS page
        FROM signals_latest
        WHERE tenant = {tenant:String} AND status = 'cold' AND visitor != '' AND type = 'page'
          AND event_time >= now() - {days:UInt32} * 86400
    ) AS cold
    ANY INNER JOIN
    (
        SELECT id_kind, id, email FROM identities_latest WHERE tenant = {tenant:String}
    ) AS ids USING (id_kind, id)
) AS visits
WHERE page LIKE {path_like:String}
GROUP BY email
ORDER BY visits DESC, email

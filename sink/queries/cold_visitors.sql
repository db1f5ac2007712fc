-- Cold visitors: anonymous visitors of one tenant whose signals are still held waiting for identification (their
-- latest version is cold), most recently active first.
-- Parameters: {tenant:String}, {limit:UInt32} (how many visitors).
SELECT
    if(anonymous_id != '', anonymous_id, user_id) AS visitor,
    count() AS signals,
    min(event_time) AS first_seen,
    max(event_time) AS last_seen,
    arraySlice(groupUniqArray(event), 1, 10) AS events
FROM signals FINAL
WHERE tenant = {tenant:String} AND status = 'cold'
GROUP BY visitor
ORDER BY last_seen DESC, visitor
LIMIT {limit:UInt32}

-- Cold visitors: visitors of one tenant whose signals are still cold (their latest version) and who are not
-- identified, most recently active first. A visitor whose hold expired before it was identified keeps cold rows
-- (they are never emitted again linked): identities_latest says it is identified, so it is not listed here (its
-- history shows in lead_timeline). Signals without any visitor id (neither anonymousId nor userId) belong to no
-- visitor and are left out, not lumped into one '' visitor.
-- Parameters: {tenant:String}, {limit:UInt32} (how many visitors).
SELECT
    visitor,
    count() AS signals,
    min(event_time) AS first_seen,
    max(event_time) AS last_seen,
    arraySlice(groupUniqArray(event), 1, 10) AS events
FROM signals_latest
WHERE tenant = {tenant:String} AND status = 'cold' AND visitor != ''
  AND NOT (anonymous_id != '' AND anonymous_id IN
      (SELECT id FROM identities_latest WHERE tenant = {tenant:String} AND id_kind = 'anonymous'))
  AND NOT (user_id != '' AND user_id IN
      (SELECT id FROM identities_latest WHERE tenant = {tenant:String} AND id_kind = 'user'))
GROUP BY visitor
ORDER BY last_seen DESC, visitor
LIMIT {limit:UInt32}

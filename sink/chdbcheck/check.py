"""Apply every sink migration and run every analyst query on the current ClickHouse engine embedded by chdb.

Usage: python check.py [SINK_DIR]   (default: the sink directory this file lives in)

The production CI server is ClickHouse 18.16; this proves the same files also run on a current release. It
mirrors the Go side: migrations are split into statements the same way (comment lines dropped, a statement ends
with ";" at a line end) with {database} replaced, and query parameters {name:Type} are rendered as quoted
literals. It loads a few rows, runs every query and checks each returns rows; it also checks the engine's limit on
the monthly partitions one INSERT may touch, which the sink's -max-partitions-per-insert default mirrors. It exits
non-zero naming every failing file.
"""

import glob
import json
import os
import re
import sys
import tempfile

import chdb
from chdb import session

DATABASE = "signalstage_check"
PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*):([A-Za-z0-9]+)\}")
# Parameter values for the check; every parameter any query uses must have one.
PARAMS = {
    "tenant": "acme",
    "email": "ann@acme.test",
    "limit": "100",
    "days": "7",
    "minutes": "120",
    "path_like": "%",
}

# A few rows, relative to now() so the queries' time windows include them: a cold page view later rehydrated
# (two versions), a mapped track event, an identify, a still-cold visitor, an identity link and a dead letter.
SIGNAL_COLUMNS = ("tenant, signal_id, version, status, source, type, event, anonymous_id, user_id, email, url, "
                  "page_name, properties, traits, rule_id, mapped_name, mapped_keys, mapped_values, event_time, "
                  "event_time_ms, received_at, processed_at, payload")
SIGNALS = [
    # (signal_id, version, status, type, event, anonymous_id, email, url, traits, rule_id, mapped_name, keys, values, minutes_ago)
    ("s1", 1, "cold", "page", "Pricing", "a1", "", "https://acme.test/pricing/42", "{}", "", "", [], [], 30),
    ("s1", 2, "linked", "page", "Pricing", "a1", "ann@acme.test", "https://acme.test/pricing/42", "{}", "", "", [], [], 30),
    ("s2", 1, "linked", "track", "Form Submitted", "a1", "ann@acme.test", "", "{}", "r-demo", "Demo Requested",
     ["title"], ["CTO"], 20),
    ("s3", 1, "linked", "identify", "identify", "a1", "ann@acme.test", "", '{"name":"Ann","company":"Acme"}', "", "",
     [], [], 10),
    ("s4", 1, "cold", "page", "Docs", "a2", "", "https://acme.test/docs/7", "{}", "", "", [], [], 5),
]


# What each query must answer on the loaded rows (the same facts TestQueries checks on 18.16, fewer of them): ann
# (a1) viewed pricing cold and was rehydrated (s1 v1 and v2), submitted the demo form (s2, rule r-demo) and
# identified (s3); a2 is still cold (s4).
EXPECT = {
    "cold_visitors.sql": lambda rows: [(r["visitor"], int(r["signals"])) for r in rows] == [("a2", 1)],
    "lead_timeline.sql": lambda rows: [(r["signal_id"], int(r["version"]), int(r["linked"])) for r in rows] ==
    [("s1", 2, 1), ("s2", 1, 1), ("s3", 1, 1)],
    "lead_rollup.sql": lambda rows: len(rows) == 1 and int(rows[0]["signals"]) == 3 and
    rows[0]["types"] == ["identify", "page", "track"] and int(rows[0]["anonymous_signals"]) == 0,
    "lead_first_touch.sql": lambda rows: len(rows) == 1 and rows[0]["first_signal_id"] == "s1" and
    rows[0]["landing_page"] == "/pricing/42",
    "lead_intent.sql": lambda rows: [(r["email"], int(r["visits"])) for r in rows] == [("ann@acme.test", 1)],
    "signal_queue.sql": lambda rows: sorted((r["type"], r["event"], int(r["signals_7d"])) for r in rows) ==
    [("identify", "identify", 1), ("page", "Docs", 1), ("page", "Pricing", 1), ("track", "Form Submitted", 1)],
}


def quote(s):
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


def statements(sql, database):
    out, cur = [], []
    for line in sql.split("\n"):
        t = line.strip()
        if not t or t.startswith("--"):
            continue
        cur.append(line)
        if t.endswith(";"):
            out.append("\n".join(cur).strip().rstrip(";").replace("{database}", database))
            cur = []
    if "\n".join(cur).strip():
        out.append("\n".join(cur).strip().rstrip(";").replace("{database}", database))
    return out


def render(sql, params):
    def sub(m):
        name, typ = m.group(1), m.group(2)
        if name not in params:
            raise KeyError("parameter {%s:%s} has no value in check.py PARAMS" % (name, typ))
        v = params[name]
        if typ == "String":
            return quote(v)
        if re.fullmatch(r"U?Int(8|16|32|64)|Float64", typ):
            float(v)
            return v
        raise ValueError("parameter type %s not supported" % typ)

    return PARAM.sub(sub, sql)


def load(sess):
    values = []
    for (sid, ver, status, typ, event, anon, email, url, traits, rule, mapped, keys, vals, ago) in SIGNALS:
        t = "now() - %d" % (ago * 60)
        values.append("(%s)" % ", ".join([
            quote("acme"), quote(sid), str(ver), quote(status), quote("segment"), quote(typ), quote(event),
            quote(anon), quote(""), quote(email), quote(url), quote(event), quote("{}"), quote(traits), quote(rule),
            quote(mapped), "[" + ",".join(map(quote, keys)) + "]::Array(String)",
            "[" + ",".join(map(quote, vals)) + "]::Array(String)",
            "toDateTime(%s, 'UTC')" % t, "toInt64(%s) * 1000" % t, "toDateTime(%s, 'UTC')" % t,
            "toDateTime(%s, 'UTC')" % t, quote('{"type":"%s"}' % typ)]))
    sess.query("INSERT INTO %s.signals (%s) VALUES %s" % (DATABASE, SIGNAL_COLUMNS, ", ".join(values)))
    sess.query("INSERT INTO %s.identities (tenant, id_kind, id, email, anonymous_id, traits, linked_at, linked_at_ms, "
               "kafka_offset) VALUES ('acme', 'anonymous', 'a1', 'ann@acme.test', 'a1', '{\"title\":\"Eng\"}', now(), "
               "toInt64(now()) * 1000, 1)" % DATABASE)
    sess.query("INSERT INTO %s.dead_letters_v2 (tenant, stage, reason, origin_topic, failed_at) VALUES "
               "('acme', 'sink', 'not avro', 'signals.resolved', now())" % DATABASE)


# The sink's default -max-partitions-per-insert: one INSERT may touch this many monthly partitions of signals and no
# more. Current ClickHouse refuses a block over max_partitions_per_insert_block; the check proves the engine's limit
# still is this value, so the sink's split (sink/table.go split) keeps backfills spanning years loadable.
MAX_PARTITIONS_PER_INSERT = 100


def check_partition_limit(sess):
    def insert(months):
        sess.query("INSERT INTO %s.signals (tenant, signal_id, version, event_time) SELECT 'limit', toString(number), 1, "
                   "addMonths(toDateTime('2000-01-15 00:00:00', 'UTC'), number) FROM numbers(%d)" % (DATABASE, months))

    insert(MAX_PARTITIONS_PER_INSERT)
    try:
        insert(MAX_PARTITIONS_PER_INSERT + 1)
    except Exception as e:
        if "max_partitions_per_insert_block" not in str(e):
            raise RuntimeError("a block of %d months failed for another reason: %s" % (MAX_PARTITIONS_PER_INSERT + 1, e))
    else:
        raise RuntimeError("a block of %d months was accepted: the engine's max_partitions_per_insert_block is no longer "
                           "%d; revisit the sink's -max-partitions-per-insert default" % (MAX_PARTITIONS_PER_INSERT + 1,
                                                                                          MAX_PARTITIONS_PER_INSERT))
    sess.query("ALTER TABLE %s.signals DELETE WHERE tenant = 'limit'" % DATABASE)


def check_exact_views(sess):
    """The views are exact on the loaded rows (s1 delivered cold as v1 and linked as v2, s4 cold) whatever the
    session's settings: FINAL with optimize_move_to_prewhere_if_final=1 and final=1 must not turn the view's filter
    into a PREWHERE before the versions are folded. Returns what a raw FINAL PREWHERE says, for the log."""
    truth = 1  # s4: the only signal whose latest version is cold
    for settings in ("", " SETTINGS optimize_move_to_prewhere_if_final = 1", " SETTINGS final = 1",
                     " SETTINGS enable_optimize_predicate_expression = 0"):
        got = int(sess.query("SELECT count() FROM %s.signals_latest WHERE tenant = 'acme' AND status = 'cold'%s"
                             % (DATABASE, settings), "CSV").bytes().decode().strip())
        if got != truth:
            raise RuntimeError("signals_latest has %d cold signals%s, want %d" % (got, settings, truth))
    n = int(sess.query("SELECT count() FROM %s.signals_latest WHERE tenant = 'acme'" % DATABASE, "CSV").bytes().decode())
    if n != 4:
        raise RuntimeError("signals_latest has %d signals of acme, want 4" % n)
    # A deleted link (a tombstone row, higher offset) hides the link it replaces.
    sess.query("INSERT INTO %s.identities (tenant, id_kind, id, deleted, kafka_offset) VALUES "
               "('acme', 'user', 'gone', 0, 1), ('acme', 'user', 'gone', 1, 2)" % DATABASE)
    n = int(sess.query("SELECT count() FROM %s.identities_latest WHERE id = 'gone'" % DATABASE, "CSV").bytes().decode())
    if n != 0:
        raise RuntimeError("identities_latest shows a deleted link")
    return sess.query("SELECT count() FROM %s.signals FINAL PREWHERE tenant = 'acme' AND status = 'cold'" % DATABASE,
                      "CSV").bytes().decode().strip()


# What the sink's erasure runs on a current engine (sink/erase.go): a lightweight DELETE per table, with the same
# kind of conditions. The loaded person is ann (email) and her visitor id a1.
ERASURE = [
    ("signals", "email IN ('ann@acme.test') OR anonymous_id IN ('a1')"),
    ("lead_signals", "email IN ('ann@acme.test') OR anonymous_id IN ('a1')"),
    ("identities", "email IN ('ann@acme.test') OR id IN ('a1')"),
    ("lead_fields", "email IN ('ann@acme.test')"),
    ("dead_letters_v2", "key IN ('acme|a1') OR positionCaseInsensitive(payload, 'ann@acme.test') > 0"),
]


def check_erasure(sess):
    for table, cond in ERASURE:
        sess.query("DELETE FROM %s.%s WHERE tenant = 'acme' AND (%s)" % (DATABASE, table, cond))
        n = int(sess.query("SELECT count() FROM %s.%s WHERE tenant = 'acme' AND (%s)" % (DATABASE, table, cond),
                           "CSV").bytes().decode())
        if n:
            raise RuntimeError("%s still has %d of the erased person's rows" % (table, n))
    n = int(sess.query("SELECT count() FROM %s.leads WHERE email = 'ann@acme.test'" % DATABASE, "CSV").bytes().decode())
    if n:
        raise RuntimeError("leads still shows the erased person")


def main():
    sink_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    failed = []
    with tempfile.TemporaryDirectory(prefix="chdbcheck") as tmp:
        sess = session.Session(tmp)
        version = sess.query("SELECT version()", "CSV").bytes().decode().strip().strip('"')
        print("chdb %s, ClickHouse engine %s" % (chdb.__version__, version))
        sess.query("CREATE DATABASE IF NOT EXISTS %s" % DATABASE)
        for path in sorted(glob.glob(os.path.join(sink_dir, "migrations", "*.sql"))):
            name = os.path.relpath(path, os.path.dirname(sink_dir))
            try:
                for i, stmt in enumerate(statements(open(path).read(), DATABASE), 1):
                    try:
                        sess.query(stmt)
                    except Exception as e:
                        raise RuntimeError("statement %d: %s" % (i, e))
                print("ok   migration %s" % name)
            except Exception as e:
                print("FAIL migration %s: %s" % (name, e))
                failed.append(name)
        if failed:
            print("FAIL: cannot run the queries without the schema", file=sys.stderr)
            return fail(failed)
        try:
            load(sess)
        except Exception as e:
            print("FAIL loading rows: %s" % e)
            return fail(["sink/chdbcheck/check.py (loading rows)"])
        try:
            check_partition_limit(sess)
            print("ok   an INSERT may touch %d monthly partitions of signals, not %d" % (MAX_PARTITIONS_PER_INSERT,
                                                                                     MAX_PARTITIONS_PER_INSERT + 1))
        except Exception as e:
            print("FAIL partition limit: %s" % e)
            failed.append("sink/chdbcheck/check.py (partition limit)")
        try:
            raw = check_exact_views(sess)
            print("ok   signals_latest and identities_latest are exact under every setting "
                  "(raw signals FINAL PREWHERE status = 'cold' says %s, the truth is 1)" % raw)
        except Exception as e:
            print("FAIL exact views: %s" % e)
            failed.append("sink/chdbcheck/check.py (exact views)")
        sess.query("USE %s" % DATABASE)
        for path in sorted(glob.glob(os.path.join(sink_dir, "queries", "*.sql"))):
            name = os.path.relpath(path, os.path.dirname(sink_dir))
            try:
                sql = render(open(path).read(), PARAMS)
                res = sess.query(sql, "JSONEachRow").bytes().decode()
                rows = [json.loads(line) for line in res.splitlines() if line.strip()]
                if not rows:
                    raise RuntimeError("returned no rows on the loaded data")
                check = EXPECT.get(os.path.basename(path))
                if check is not None and not check(rows):
                    raise RuntimeError("answered %s" % rows)
                # deploy/clickhouse/signalstage-profile.xml sets final = 1: the answer must not change.
                with_final = sess.query(sql + "\nSETTINGS final = 1", "JSONEachRow").bytes().decode()
                if [json.loads(line) for line in with_final.splitlines() if line.strip()] != rows:
                    raise RuntimeError("answers differently with final = 1 (deploy's profile)")
                print("ok   query %s (%d rows)" % (name, len(rows)))
            except Exception as e:
                print("FAIL query %s: %s" % (name, e))
                failed.append(name)
        try:
            check_erasure(sess)
            print("ok   erasure: lightweight DELETE removes the person from every table and from leads")
        except Exception as e:
            print("FAIL erasure: %s" % e)
            failed.append("sink/chdbcheck/check.py (erasure)")
        sess.close()
    return fail(failed)


def fail(failed):
    if failed:
        print("chdb check failed: %s" % ", ".join(failed), file=sys.stderr)
        return 1
    print("chdb check passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())

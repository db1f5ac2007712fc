"""send-python.py: sends a scripted list of calls with segment-analytics-python and waits until it has flushed.

Run by testenv.RunPythonClient (testenv/clients.go) with the venv that testenv/clients/install.sh made.
Input: one JSON object on stdin,
  {"host": "http://127.0.0.1:PORT", "writeKey": "...", "calls": [{"type": "track", ...}, ...],
   "maxRetries": N|null, "flushAt": N|null, "gzip": bool}
Output: one JSON line on stdout, {"sent": N, "failed": N, "errors": ["..."]}. Exit status 1 when any call
was not delivered (the library reports it through on_error, once per batch), 2 on bad input.
"""
import json
import sys
from datetime import datetime

from segment.analytics import Client


def main():
    try:
        cfg = json.load(sys.stdin)
    except ValueError as e:
        print("send-python: stdin is not JSON: %s" % e, file=sys.stderr)
        return 2
    result = {"sent": 0, "failed": 0, "errors": []}

    def on_error(err, batch):
        result["failed"] += len(batch)
        result["errors"].append(str(err))

    kwargs = {"host": cfg["host"], "on_error": on_error, "gzip": bool(cfg.get("gzip"))}
    if cfg.get("maxRetries") is not None:
        kwargs["max_retries"] = cfg["maxRetries"]
    if cfg.get("flushAt") is not None:
        kwargs["upload_size"] = cfg["flushAt"]
    client = Client(cfg["writeKey"], **kwargs)

    for c in cfg["calls"]:
        common = {
            "context": c.get("context"),
            "integrations": c.get("integrations"),
            "message_id": c.get("messageId"),
        }
        if c.get("timestamp"):
            common["timestamp"] = datetime.fromisoformat(c["timestamp"].replace("Z", "+00:00"))
        t = c.get("type")
        if t == "identify":
            client.identify(c.get("userId"), c.get("traits"), anonymous_id=c.get("anonymousId"), **common)
        elif t == "track":
            client.track(c.get("userId"), c.get("event"), c.get("properties"), anonymous_id=c.get("anonymousId"), **common)
        elif t in ("page", "screen"):
            fn = client.page if t == "page" else client.screen
            fn(c.get("userId"), c.get("category"), c.get("name"), c.get("properties"), anonymous_id=c.get("anonymousId"), **common)
        elif t == "group":
            client.group(c.get("userId"), c.get("groupId"), c.get("traits"), anonymous_id=c.get("anonymousId"), **common)
        elif t == "alias":
            client.alias(c.get("previousId"), c.get("userId"), **common)
        else:
            print("send-python: unknown call type %r" % t, file=sys.stderr)
            return 2
    client.shutdown()
    result["sent"] = len(cfg["calls"]) - result["failed"]
    print(json.dumps(result))
    return 1 if result["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())

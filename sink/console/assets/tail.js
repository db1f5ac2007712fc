// Live tail: reads /tail/stream (server-sent events) and prepends each signal as a table row. Text only
// (textContent), so a payload can never inject markup.
(function () {
  "use strict";
  var status = document.getElementById("tail-status");
  var body = document.getElementById("tail-rows");
  var params = new URLSearchParams({ tenant: status.dataset.tenant || "", event: status.dataset.event || "" });
  var src = new EventSource("/tail/stream?" + params.toString());
  var count = 0;
  src.addEventListener("ready", function () {
    status.textContent = "connected: waiting for signals";
  });
  src.addEventListener("signal", function (e) {
    var s = JSON.parse(e.data);
    var tr = document.createElement("tr");
    var cells = [s.time, s.tenant, s.source, s.type, s.event, s.status, s.visitor, s.email,
      s.rule_id ? s.rule_id + " → " + s.mapped_name : "", String(s.version)];
    cells.forEach(function (text, i) {
      var td = document.createElement("td");
      if (i === 7 && text) {
        var a = document.createElement("a");
        a.href = "/lead?" + new URLSearchParams({ tenant: s.tenant, email: text }).toString();
        a.textContent = text;
        td.appendChild(a);
      } else {
        td.textContent = text;
      }
      tr.appendChild(td);
    });
    body.insertBefore(tr, body.firstChild);
    while (body.rows.length > 500) body.deleteRow(body.rows.length - 1);
    count++;
    status.textContent = "connected: " + count + " signal" + (count === 1 ? "" : "s") + " since the page opened";
  });
  src.onerror = function () {
    status.textContent = "disconnected: retrying…";
  };
})();

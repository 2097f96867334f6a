// amqpprox trace view: the frames of a trace, live, from the trace's Server-Sent Events.
// Drawn once per animation frame; when frames come faster than that, only the latest are
// drawn and the others counted as skipped (with those the server's stream dropped).
(function () {
  "use strict";
  const view = document.getElementById("trace-view");
  if (!view) return;
  const body = document.querySelector("#trace-events tbody");
  const status = document.getElementById("trace-status");
  const skippedOut = document.getElementById("trace-skipped");
  const filterInput = document.getElementById("trace-filter");
  const pauseButton = document.getElementById("trace-pause");
  const stateBadge = document.getElementById("trace-state");
  const MAX_ROWS = 500;
  const PER_DRAW = 50;
  let pending = [];
  let skipped = 0;
  let dropped = 0;
  let received = 0;
  let paused = false;
  let scheduled = false;
  let needle = "";

  function summary(ev) {
    if (ev.type === "method") return ev.method;
    if (ev.type === "header") return "content header";
    if (ev.type === "body") return "content body";
    return ev.type;
  }

  function details(ev) {
    if (ev.error) return ev.error;
    if (ev.type === "method") return JSON.stringify(ev.arguments);
    if (ev.type === "header") return "body_size " + ev.body_size + " " + JSON.stringify(ev.properties);
    if (ev.type === "body") return "size " + ev.body_size + (ev.body_base64 ? " base64 " + ev.body_base64 : "");
    return "";
  }

  function matches(row) {
    return !needle || row.dataset.text.indexOf(needle) >= 0;
  }

  function row(ev) {
    const tr = document.createElement("tr");
    const time = new Date(ev.time * 1000);
    const cells = [
      time.toLocaleTimeString() + "." + String(time.getMilliseconds()).padStart(3, "0"),
      String(ev.session),
      ev.direction === "client_to_broker" ? "client → broker" : "broker → client",
      String(ev.channel),
      summary(ev),
      details(ev),
    ];
    cells.forEach(function (text, i) {
      const td = document.createElement("td");
      td.textContent = text; // never HTML: names come from clients
      if (i === 1 || i === 3) td.className = "num";
      if (i === 5) td.className = "mono small";
      tr.appendChild(td);
    });
    tr.className = "frame frame-" + ev.type;
    tr.dataset.text = cells.slice(1).join(" ").toLowerCase();
    tr.hidden = !matches(tr);
    return tr;
  }

  function showCounts() {
    status.textContent = received + " frames received" + (paused ? " · view paused" : "");
    skippedOut.textContent = (skipped + dropped) + " skipped";
  }

  function draw() {
    scheduled = false;
    if (paused) return;
    const batch = pending;
    pending = [];
    const fragment = document.createDocumentFragment();
    batch.forEach(function (ev) { fragment.appendChild(row(ev)); });
    body.appendChild(fragment);
    while (body.rows.length > MAX_ROWS) body.deleteRow(0);
    showCounts();
  }

  function schedule() {
    if (!scheduled && !paused) {
      scheduled = true;
      window.requestAnimationFrame(draw);
    }
  }

  const source = new EventSource(view.dataset.events);
  source.onmessage = function (message) {
    received += 1;
    pending.push(JSON.parse(message.data));
    if (pending.length > PER_DRAW) {
      skipped += pending.length - PER_DRAW;
      pending = pending.slice(-PER_DRAW);
    }
    schedule();
    if (paused) showCounts();
  };
  source.addEventListener("trace", function () { showCounts(); });
  source.addEventListener("dropped", function (message) {
    dropped = JSON.parse(message.data).dropped;
    showCounts();
  });
  source.addEventListener("end", function (message) {
    const trace = JSON.parse(message.data);
    source.close();
    draw();
    view.dataset.state = "stopped";
    if (stateBadge) {
      stateBadge.textContent = "stopped";
      stateBadge.className = "badge state-closed";
    }
    status.textContent = received + " frames received · trace stopped (" +
      String(trace.stop_reason || "").replace(/_/g, " ") + ")";
  });

  filterInput.addEventListener("input", function () {
    needle = filterInput.value.trim().toLowerCase();
    Array.prototype.forEach.call(body.rows, function (tr) { tr.hidden = !matches(tr); });
  });
  pauseButton.addEventListener("click", function () {
    paused = !paused;
    pauseButton.setAttribute("aria-pressed", paused ? "true" : "false");
    pauseButton.textContent = paused ? "Resume view" : "Pause view";
    showCounts();
    schedule();
  });
})();

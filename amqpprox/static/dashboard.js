// amqpprox dashboard: keeps server-rendered pages live and adds a confirmation dialog.
// Pages work without this script; it only re-fetches each page's regions (the server
// renders them, so formatting lives in one place) and replaces them in place.
"use strict";
(function () {
  const body = document.body;
  const interval = Number(body.dataset.liveInterval) || 1000;
  const status = document.getElementById("live-status");
  const dialog = document.getElementById("confirm-dialog");
  let timer = null;
  let failures = 0;
  let inflight = null;
  // A click is a press and a release on the same element: never swap a region in between.
  let pressed = false;
  document.addEventListener("pointerdown", () => { pressed = true; }, true);
  const release = () => setTimeout(() => { pressed = false; }, 0);
  document.addEventListener("pointerup", release, true);
  document.addEventListener("pointercancel", release, true);

  function setStatus(state, text) {
    if (!status) return;
    status.dataset.state = state;
    status.textContent = text;
  }

  function regions() {
    return document.querySelectorAll("[data-region]");
  }

  function schedule(delay) {
    clearTimeout(timer);
    timer = setTimeout(refresh, delay);
  }

  async function refresh() {
    if (!regions().length) return;
    if (document.hidden || (dialog && dialog.open)) {
      schedule(interval);
      return;
    }
    if (pressed) {
      schedule(100);
      return;
    }
    if (inflight) inflight.abort();
    const controller = new AbortController();
    inflight = controller;
    const timeout = setTimeout(() => controller.abort(), Math.max(5000, interval * 4));
    try {
      const response = await fetch(location.href, {
        headers: { "X-Dashboard-Live": "1", Accept: "application/json" },
        credentials: "same-origin",
        cache: "no-store",
        signal: controller.signal,
      });
      if (response.status === 401) {
        setStatus("offline", "Sign in to keep this page live");
        schedule(interval * 5);
        return;
      }
      if (response.status === 404) {
        setStatus("gone", "No longer exists");
        schedule(interval * 5);
        return;
      }
      if (!response.ok) throw new Error("HTTP " + response.status);
      const data = await response.json();
      if (pressed || (dialog && dialog.open)) {
        schedule(100); // the operator is acting on what is shown; refresh right after
        return;
      }
      apply(data.regions || {});
      failures = 0;
      setStatus("live", "Live · " + (data.generated_at || "").slice(11));
      schedule(interval);
    } catch (error) {
      if (controller.signal.aborted && inflight !== controller) return; // superseded
      failures += 1;
      setStatus("offline", "Connection lost · retrying");
      schedule(Math.min(10000, interval * (1 + failures)));
    } finally {
      clearTimeout(timeout);
      if (inflight === controller) inflight = null;
    }
  }

  function apply(rendered) {
    const focused = document.activeElement && document.activeElement.id;
    for (const [name, html] of Object.entries(rendered)) {
      const target = document.querySelector('[data-region="' + name + '"]');
      if (target && target.innerHTML !== html) target.innerHTML = html;
    }
    if (focused && document.activeElement === body) {
      const again = document.getElementById(focused);
      if (again) again.focus({ preventScroll: true });
    }
  }

  // -- the confirmation step as a dialog (the server asks again when this is absent) --------
  function confirmAction(form) {
    if (!dialog || typeof dialog.showModal !== "function") {
      form.submit(); // the server renders its confirmation page
      return;
    }
    document.getElementById("confirm-title").textContent = form.dataset.title || "Confirm";
    document.getElementById("confirm-explain").textContent = form.dataset.explain || "";
    const reason = document.getElementById("confirm-reason");
    const token = document.getElementById("confirm-token");
    const tokenInput = document.getElementById("confirm-token-input");
    reason.hidden = !form.dataset.reason;
    token.hidden = !body.dataset.needsToken;
    tokenInput.required = !token.hidden;
    tokenInput.value = "";
    const ok = document.getElementById("confirm-ok");
    ok.textContent = form.dataset.label || "Confirm";
    ok.className = "btn " + (form.dataset.danger ? "btn-danger" : "btn-primary");
    dialog.returnValue = "";
    dialog.onclose = () => {
      if (dialog.returnValue !== "ok") return;
      const add = (name, value) => {
        const input = document.createElement("input");
        input.type = "hidden";
        input.name = name;
        input.value = value;
        form.appendChild(input);
      };
      add("confirm", "yes");
      if (form.dataset.reason) add("reason", document.getElementById("confirm-reason-input").value);
      if (!token.hidden) add("token", tokenInput.value);
      setStatus("static", "Working…");
      form.submit();
    };
    dialog.showModal();
    (token.hidden ? ok : tokenInput).focus();
  }

  document.addEventListener("submit", (event) => {
    const form = event.target;
    if (form instanceof HTMLFormElement && form.classList.contains("action-form")) {
      event.preventDefault();
      confirmAction(form);
    }
  });

  // -- filters apply as you change them ------------------------------------------------------
  const filters = document.getElementById("session-filters");
  if (filters) {
    const apply = () => {
      const params = new URLSearchParams(new FormData(filters));
      for (const [key, value] of [...params]) {
        if (value === "" || (key === "vhost" && value === "*") || (key === "state" && value === "live"))
          params.delete(key);
      }
      const query = params.toString();
      history.replaceState(null, "", location.pathname + (query ? "?" + query : ""));
      refresh();
    };
    filters.addEventListener("change", (event) => {
      if (event.target.tagName === "SELECT") apply();
    });
    let debounce = null;
    filters.addEventListener("input", (event) => {
      if (event.target.type !== "search") return;
      clearTimeout(debounce);
      debounce = setTimeout(apply, 250);
    });
    filters.addEventListener("submit", (event) => {
      event.preventDefault();
      apply();
    });
  }

  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) schedule(0);
  });
  window.addEventListener("online", () => schedule(0));
  if (regions().length) {
    setStatus("live", "Live");
    schedule(interval);
  }
})();

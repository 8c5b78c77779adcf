/* The mock's dashboard (mockserver/http/ui.py): acts through the JSON control endpoints and refreshes itself.
   Plain script, no build step. Everything it shows that came from the server goes in as text (textContent),
   never as HTML. */
(() => {
  "use strict";

  const REFRESH_MS = 2000;
  const JSON_HEADERS = { "Content-Type": "application/json", "Accept": "application/json" };
  let refreshing = false;

  // -- messages -----------------------------------------------------------------------------------------------

  let toastTimer = 0;
  function toast(text, ok) {
    const box = document.getElementById("toast");
    if (!box) return;
    box.textContent = text;
    box.className = "toast " + (ok ? "ok" : "bad");
    box.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { box.hidden = true; }, ok ? 2500 : 6000);
  }

  /** A refusal's body as one line: each error's field and message (the control plane's FAILURE body). */
  async function describe(response) {
    let body = null;
    try { body = await response.json(); } catch (e) { /* not JSON */ }
    if (body && Array.isArray(body.errors) && body.errors.length) {
      return body.errors.map((e) => `${e.field}: ${e.message}`).join("; ");
    }
    if (body && typeof body.error === "string") return body.error;
    return `HTTP ${response.status}`;
  }

  function showResult(form, text) {
    const out = form.querySelector(".result");
    if (out) { out.textContent = text; out.hidden = !text; }
    else if (text) toast(text, false);
  }

  // -- acting through the control plane --------------------------------------------------------------------------

  /** The JSON body a form sends: "fields" (named inputs; empty ones left out), "json" (its textarea), or {}. */
  function bodyOf(form) {
    const kind = form.dataset.body || "none";
    if (kind === "json") {
      const text = form.elements.namedItem("json").value.trim();
      let value;
      try { value = JSON.parse(text || "{}"); } catch (e) { throw new Error(`body: not JSON (${e.message})`); }
      if (value === null || typeof value !== "object" || Array.isArray(value)) throw new Error("body: must be a JSON object");
      return value;
    }
    const body = {};
    if (kind === "fields") {
      for (const el of form.elements) {
        if (!el.name || el.disabled || el.type === "submit" || el.type === "button") continue;
        const raw = el.value.trim();
        if (raw === "") continue;
        body[el.name] = el.dataset.type === "number" ? Number(raw) : raw;
      }
    }
    return body;
  }

  async function act(form) {
    if (form.dataset.confirm && form.dataset.armed !== "1") {   // a second click within 5 s confirms
      const button = form.querySelector("button[type=submit]");
      form.dataset.armed = "1";
      button.dataset.label = button.textContent;
      button.textContent = form.dataset.confirm + " Click again";
      button.classList.add("armed");
      setTimeout(() => disarm(form), 5000);
      return;
    }
    disarm(form);
    let body;
    try { body = bodyOf(form); } catch (e) { showResult(form, e.message); return; }
    const buttons = form.querySelectorAll("button");
    buttons.forEach((b) => { b.disabled = true; });
    try {
      const response = await fetch(form.dataset.url, {
        method: form.dataset.method || "POST", credentials: "same-origin", headers: JSON_HEADERS,
        body: JSON.stringify(body),
      });
      if (!response.ok) { showResult(form, await describe(response)); return; }
      showResult(form, "");
      form.reset();
      const open = form.closest("details");
      if (open) open.open = false;
      toast(form.dataset.done || "Done", true);
      await refresh(true);
    } catch (e) {
      showResult(form, `the mock did not answer (${e.message})`);
    } finally {
      buttons.forEach((b) => { b.disabled = false; });
    }
  }

  function disarm(form) {
    if (form.dataset.armed !== "1") return;
    const button = form.querySelector("button[type=submit]");
    form.dataset.armed = "";
    button.textContent = button.dataset.label || button.textContent;
    button.classList.remove("armed");
  }

  async function signIn(form) {
    const token = form.elements.namedItem("token").value;
    const response = await fetch(form.dataset.signIn, {
      method: "POST", credentials: "same-origin", headers: JSON_HEADERS, body: JSON.stringify({ token }),
    });
    if (response.ok) location.reload();
    else showResult(form, await describe(response));
  }

  document.addEventListener("submit", (event) => {
    const form = event.target;
    if (form.matches("form[data-sign-in]")) { event.preventDefault(); signIn(form); return; }
    if (!form.matches("form[data-url]")) return;   // GET filter forms navigate as usual
    event.preventDefault();
    act(form);
  });

  document.addEventListener("click", async (event) => {
    const button = event.target.closest("[data-sign-out]");
    if (!button) return;
    await fetch(button.dataset.signOut || "/__mock__/ui/session",
                { method: "DELETE", credentials: "same-origin", headers: JSON_HEADERS, body: "{}" });
    location.reload();
  });

  // -- rules (their endpoint may not exist on this mock) ---------------------------------------------------------

  function cell(row, text, className) {
    const td = document.createElement("td");
    td.textContent = text;
    if (className) td.className = className;
    row.appendChild(td);
    return td;
  }

  async function loadRules(root) {
    const section = root.querySelector("[data-rules-url]");
    if (!section) return;
    const list = section.querySelector("[data-rules-list]");
    const base = section.dataset.rulesUrl;
    let response;
    try {
      response = await fetch(base, { credentials: "same-origin", headers: { "Accept": "application/json" } });
    } catch (e) { return; }
    if (response.status === 404 || response.status === 405) {
      const p = document.createElement("p");
      p.className = "muted";
      p.textContent = "Rules unavailable: this mock has no /__mock__/rules.";
      list.replaceChildren(p);
      section.querySelector("details.add")?.setAttribute("hidden", "");
      return;
    }
    if (!response.ok) { const p = document.createElement("p"); p.className = "error"; p.textContent = await describe(response); list.replaceChildren(p); return; }
    let data;
    try { data = await response.json(); } catch (e) { return; }
    const rules = Array.isArray(data) ? data : (Array.isArray(data.rules) ? data.rules : []);
    if (!rules.length) {
      const p = document.createElement("p");
      p.className = "muted";
      p.textContent = "No rule: every submit follows the lifecycle and failure rate.";
      list.replaceChildren(p);
      return;
    }
    const wrap = document.createElement("div");
    wrap.className = "table-wrap";
    const table = document.createElement("table");
    table.className = "log";
    const head = table.createTHead().insertRow();
    for (const title of ["id", "match", "then", ""]) { const th = document.createElement("th"); th.textContent = title; head.appendChild(th); }
    const tbody = table.createTBody();
    for (const rule of rules) {
      const row = tbody.insertRow();
      const id = rule && rule.id != null ? String(rule.id) : "";
      cell(row, id, "mono");
      cell(row, JSON.stringify(rule.match ?? {}), "mono wrap");
      const rest = Object.assign({}, rule); delete rest.id; delete rest.match;
      cell(row, JSON.stringify(rest), "mono wrap");
      const td = cell(row, "");
      if (id) {
        const form = document.createElement("form");
        form.dataset.url = `${base}/${encodeURIComponent(id)}`;
        form.dataset.method = "DELETE";
        form.dataset.done = "Rule deleted";
        const b = document.createElement("button");
        b.type = "submit"; b.className = "ghost danger"; b.textContent = "Delete";
        form.appendChild(b);
        td.appendChild(form);
      }
    }
    wrap.appendChild(table);
    const clear = document.createElement("form");
    clear.className = "row";
    clear.dataset.url = base; clear.dataset.method = "DELETE"; clear.dataset.done = "Rules cleared";
    const cb = document.createElement("button");
    cb.type = "submit"; cb.className = "ghost"; cb.textContent = "Clear all rules";
    clear.appendChild(cb);
    list.replaceChildren(wrap, clear);
  }

  // -- refreshing itself ------------------------------------------------------------------------------------------

  /** True while the user is typing in a form, or a form holds edits not yet sent. */
  function editing() {
    const el = document.activeElement;
    if (el && el.matches && el.matches("input, textarea, select") && el.form) return true;
    if (document.querySelector("form[data-armed='1']")) return true;
    for (const el of document.querySelectorAll("main input, main textarea, main select")) {
      if (el.type === "hidden") continue;
      if (el.tagName === "SELECT") {
        const initial = [...el.options].findIndex((o) => o.defaultSelected);
        if (el.selectedIndex !== Math.max(initial, 0)) return true;
      } else if (el.value !== el.defaultValue) return true;
    }
    return false;
  }

  function setLive(state, title) {
    const live = document.getElementById("live");
    if (!live) return;
    live.className = "live " + state;
    live.textContent = state === "" ? "live" : state;
    if (title) live.title = title;
  }

  async function refresh(force) {
    if (refreshing) return;
    if (!force && (document.hidden || editing())) { if (!document.hidden) setLive("paused", "Paused while you edit a form"); return; }
    refreshing = true;
    try {
      const response = await fetch(location.href, { credentials: "same-origin", cache: "no-store", headers: { "Accept": "text/html" } });
      if (response.status === 401) { location.reload(); return; }
      const doc = new DOMParser().parseFromString(await response.text(), "text/html");
      if (!force && editing()) return;   // the user started typing meanwhile: keep their form
      swap(doc);
      setLive("", "This page refreshes itself every 2 s");
    } catch (e) {
      setLive("offline", "The mock did not answer");
    } finally {
      refreshing = false;
    }
  }

  function swap(doc) {
    const fresh = doc.getElementById("main"), old = document.getElementById("main");
    if (!fresh || !old) return;
    const open = new Set([...old.querySelectorAll("details[open][id]")].map((d) => d.id));
    const rules = old.querySelector("[data-rules-list]");
    const next = document.importNode(fresh, true);
    for (const id of open) next.querySelector(`details[id="${CSS.escape(id)}"]`)?.setAttribute("open", "");
    const nextRules = next.querySelector("[data-rules-list]");
    if (rules && nextRules) nextRules.replaceChildren(...[...rules.childNodes].map((n) => n.cloneNode(true)));
    const y = window.scrollY;
    old.replaceWith(next);
    window.scrollTo(0, y);
    const facts = doc.getElementById("facts"), oldFacts = document.getElementById("facts");
    if (facts && oldFacts) {
      const live = oldFacts.querySelector("#live");
      const nextFacts = document.importNode(facts, true);
      nextFacts.querySelector("#live")?.replaceWith(live);
      oldFacts.replaceWith(nextFacts);
    }
    document.title = doc.title;
    loadRules(next);
  }

  document.addEventListener("DOMContentLoaded", () => {
    if (document.querySelector("form[data-sign-in]")) return;   // the token form: nothing to refresh
    loadRules(document);
    setInterval(() => refresh(false), REFRESH_MS);
    document.addEventListener("visibilitychange", () => { if (!document.hidden) refresh(false); });
  });
})();

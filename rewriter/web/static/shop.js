// affinity's reference storefront integration. What a shop's own page does:
//
// 1. Search through the affinity proxy with the shopper's id in `X-User-Id` (raw id: the
//    proxy pseudonymizes it), `?explain=true` for the "why this result" notes, and
//    `X-Personalization: off` for the generic view.
// 2. Show "Personalized for you" when `personalization.applied` is true.
// 3. Send each click to `POST /events` with the `query_id` of the search it came from
//    (`personalization.query_id`), so experiment reports can join clicks to searches.
// 4. With auth on, never hold a secret in the page: the server hands the page a short-lived
//    user token (`afu_...`) for this shopper, sent as `Authorization: Bearer`. The proxy lets
//    it search and send events for that shopper only. Here the demo asks
//    /_affinity/shop/token (staff sign-in); a real shop issues it from its own backend
//    (`affinity keys user-token`, or rewriter.auth.tokens.issue_user_token).
(function () {
  "use strict";
  const root = document.getElementById("shop");
  const form = document.getElementById("shop-form");
  const status = document.getElementById("shop-status");
  const marker = document.getElementById("shop-marker");
  const list = document.getElementById("shop-results");
  let token = null;
  let tokenUser = null;

  async function credentials(user) {
    if (root.dataset.auth !== "required" || !user) return {};
    if (token === null || tokenUser !== user) {
      const response = await fetch(root.dataset.tokenUrl, {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams({ user: user, csrf: root.dataset.csrf }),
      });
      if (!response.ok) throw new Error("no user token: " + response.status);
      token = (await response.json()).token;
      tokenUser = user;
    }
    return { Authorization: "Bearer " + token };
  }

  function searchBody(q) {
    const query = q
      ? { multi_match: { query: q, fields: ["title^2", "description"] } }
      : { match_all: {} };
    return { query: query, size: 10 };
  }

  function whyNote(hit) {
    const a = hit._affinity;
    if (!a) return "";
    const parts = [];
    for (const [attribute, match] of Object.entries(a.attributes || {})) {
      if (match.value && match.contribution > 0) parts.push("you like " + attribute + " " + match.value);
    }
    if (a.rules && a.rules.length) parts.push("featured by " + a.rules.join(", "));
    if (hit._pinned) parts.push("featured at position " + hit._pinned.position);
    return parts.length ? "Why: " + parts.join("; ") : "";
  }

  function render(data, user) {
    const p = data.personalization || {};
    marker.classList.toggle("hidden", !p.applied);
    list.replaceChildren();
    const hits = (data.hits && data.hits.hits) || [];
    hits.forEach((hit, i) => {
      const li = document.createElement("li");
      li.dataset.id = hit._id;
      const title = document.createElement("span");
      title.className = "title";
      title.textContent = (hit._source && hit._source.title) || hit._id; // text, never HTML
      title.addEventListener("click", () => click(user, hit._id, i + 1, p.query_id));
      li.appendChild(title);
      const why = whyNote(hit);
      if (why && p.applied) {
        const note = document.createElement("span");
        note.className = "why-note";
        note.textContent = why;
        li.appendChild(note);
      }
      list.appendChild(li);
    });
    status.textContent = hits.length + " results" + (p.applied ? "" : " (generic order)");
  }

  async function search(event) {
    event.preventDefault();
    const user = document.getElementById("shop-user").value.trim();
    const q = document.getElementById("shop-q").value.trim();
    const generic = document.getElementById("shop-generic").checked;
    try {
      const headers = Object.assign({ "content-type": "application/json" }, await credentials(user));
      if (user) headers["X-User-Id"] = user;
      if (generic) headers["X-Personalization"] = "off";
      const response = await fetch("/" + encodeURIComponent(root.dataset.index) + "/_search?explain=true", {
        method: "POST",
        headers: headers,
        body: JSON.stringify(searchBody(q)),
      });
      const data = await response.json();
      if (!response.ok) {
        status.textContent = "search failed: " + ((data.error && data.error.reason) || response.status);
        return;
      }
      render(data, user);
    } catch (err) {
      status.textContent = String(err);
    }
  }

  async function click(user, item, position, queryId) {
    if (!user) return;
    const event = {
      type: "click",
      user_id: user,
      item_id: item,
      position: position,
      timestamp: new Date().toISOString(),
    };
    if (window.crypto && crypto.randomUUID) event.event_id = crypto.randomUUID(); // safe resends
    if (queryId) event.query_id = queryId;
    const headers = Object.assign({ "content-type": "application/json" }, await credentials(user));
    const response = await fetch("/events", { method: "POST", headers: headers, body: JSON.stringify([event]) });
    const answer = await response.json();
    const why = (answer.rejections || []).map((r) => r.field + ": " + r.reason).join("; ");
    status.textContent = "click on " + item + " sent: " + response.status + (why ? " (" + why + ")" : "");
  }

  form.addEventListener("submit", search);
  document.getElementById("shop-generic").addEventListener("change", () => form.requestSubmit());
})();

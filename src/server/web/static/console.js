// hotdesk console: live desk rows (server-sent events) and client-side filtering.
// Every page works without this file; it only saves reloads.
"use strict";

function applyFilter(input) {
  const body = document.getElementById(input.dataset.filter);
  if (!body) return;
  const needle = input.value.trim().toLowerCase();
  for (const row of body.rows) {
    if (row.classList.contains("empty")) continue;
    row.hidden = needle !== "" && !row.textContent.toLowerCase().includes(needle);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  for (const input of document.querySelectorAll("input[data-filter]")) {
    input.addEventListener("input", () => applyFilter(input));
  }
  for (const form of document.querySelectorAll("form[data-nosubmit]")) {
    form.addEventListener("submit", (e) => e.preventDefault());
  }
  const desks = document.getElementById("desks");
  if (desks && window.EventSource) {
    const live = document.getElementById("live");
    const source = new EventSource("/admin/events");
    source.addEventListener("desks", (e) => {
      // The rows are rendered and escaped by the server, with this session's CSRF token.
      desks.innerHTML = e.data;
      const q = document.querySelector('input[data-filter="desks"]');
      if (q) applyFilter(q);
      if (live) live.hidden = false;
    });
    source.addEventListener("error", () => { if (live) live.hidden = true; });
  }
});

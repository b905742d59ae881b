// d2c ui: copy buttons, and polling of a live run's page (no other behaviour, no outside requests).
"use strict";

document.addEventListener("click", (event) => {
  const button = event.target.closest("button.copy");
  if (!button) return;
  const command = button.getAttribute("data-copy");
  const done = () => { button.textContent = "copied"; setTimeout(() => { button.textContent = "copy"; }, 1500); };
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(command).then(done, () => { button.textContent = "select and copy"; });
  } else {
    const range = document.createRange();
    range.selectNodeContents(button.previousElementSibling);
    const selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    button.textContent = "selected";
  }
});

function pollLiveRun(url, everyMs) {
  let stopped = false;
  const tick = async () => {
    if (stopped) return;
    try {
      const response = await fetch(url, { cache: "no-store", credentials: "same-origin" });
      if (response.ok) {
        const live = await response.json();
        for (const [id, html] of Object.entries(live.fragments)) {
          const element = document.getElementById(id);
          if (element && element.innerHTML !== html) element.innerHTML = html;
        }
        document.body.setAttribute("data-spent", String(live.spent_usd));
        if (!live.active) { stopped = true; window.location.reload(); return; }
      }
    } catch (error) {
      // The dashboard was stopped or the network blinked: try again at the next tick.
    }
    setTimeout(tick, everyMs);
  };
  setTimeout(tick, everyMs);
}

document.addEventListener("DOMContentLoaded", () => {
  const title = document.getElementById("run-title");
  const url = title && title.getAttribute("data-live-url");
  if (url) pollLiveRun(url, 1500);
});

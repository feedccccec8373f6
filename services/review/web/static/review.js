// Keyboard shortcuts for working through the queue. Keys typed into a field are the field's.
(function () {
  function typing(event) {
    const tag = event.target.tagName;
    return tag === "INPUT" || tag === "SELECT" || tag === "TEXTAREA";
  }
  const rows = Array.from(document.querySelectorAll("#queue tbody tr"));
  let selected = rows.length ? 0 : -1;
  function select(i) {
    if (!rows.length) return;
    rows.forEach(function (r) { r.classList.remove("selected"); });
    selected = Math.max(0, Math.min(rows.length - 1, i));
    rows[selected].classList.add("selected");
  }
  select(0);
  document.addEventListener("keydown", function (event) {
    if (typing(event) || event.ctrlKey || event.metaKey || event.altKey) return;
    const video = document.getElementById("video");
    const go = function (id) { const a = document.getElementById(id); if (a) { window.location = a.href; } };
    switch (event.key) {
      case "j": select(selected + 1); break;
      case "k": select(selected - 1); break;
      case "Enter": if (selected >= 0) window.location = rows[selected].dataset.href; break;
      case " ":
        if (video) { event.preventDefault(); if (video.paused) { video.play(); } else { video.pause(); } }
        break;
      case "a": { const b = document.getElementById("approve"); if (b) b.click(); break; }
      case "r": { const s = document.getElementById("reject-reason"); if (s) { event.preventDefault(); s.focus(); } break; }
      case "n": go("next"); break;
      case "q": go("back"); break;
    }
  });
})();

// The live tail: server-sent events appended to #tail; EventSource resumes
// by itself (Last-Event-ID) after a dropped connection.
document.addEventListener("DOMContentLoaded", () => {
  const box = document.getElementById("tail-box");
  if (!box) return;
  const body = document.getElementById("tail"), status = document.getElementById("tail-status");
  const toggle = document.getElementById("tail-toggle");
  let source = null;
  const stop = () => { if (source) source.close(); source = null; toggle.textContent = "Start"; status.textContent = "stopped"; };
  toggle.addEventListener("click", () => {
    if (source) return stop();
    source = new EventSource(box.dataset.src);
    toggle.textContent = "Stop";
    status.textContent = "connecting";
    source.onopen = () => { status.textContent = "live"; };
    source.onerror = () => { if (source) status.textContent = "reconnecting"; };
    source.addEventListener("record", (e) => {
      body.insertAdjacentHTML("afterbegin", e.data);
      while (body.rows.length > 500) body.deleteRow(body.rows.length - 1);
    });
    source.addEventListener("problem", (e) => { status.textContent = e.data; });
    source.addEventListener("gone", (e) => { stop(); status.textContent = e.data; });
  });
});

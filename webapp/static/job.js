// Poll a background job until it is done, then open its result.
(function () {
  const box = document.getElementById("job");
  if (!box) return;
  const url = box.dataset.status;
  const bar = document.getElementById("job-progress");
  const stage = document.getElementById("job-stage");
  async function poll() {
    let job;
    try {
      const r = await fetch(url, { headers: { Accept: "application/json" } });
      job = await r.json();
      if (!r.ok) throw new Error(job.error ? job.error.message : r.statusText);
    } catch (e) {
      stage.textContent = "cannot reach the server (" + e.message + "), retrying ...";
      setTimeout(poll, 2000);
      return;
    }
    bar.value = job.progress;
    stage.textContent = job.stage + (job.tiles_total ? ` (${job.tiles_done} of ${job.tiles_total} tiles)` : "");
    if (job.status === "done") {
      window.location = box.dataset.results + job.result_id;
    } else if (job.status === "failed") {
      const p = document.createElement("p");
      p.className = "error"; p.id = "error"; p.setAttribute("role", "alert");
      p.textContent = job.error;
      box.appendChild(p);
    } else {
      setTimeout(poll, 500);
    }
  }
  poll();
})();

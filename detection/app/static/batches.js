// Many photos at once when the service runs its jobs on a queue (/info says "queue": true): they go up as one
// POST /batches, the queue's workers annotate them, and the page offers the result as one zip (annotated photos,
// faces.csv, faces.json). page.js hands the chosen files to facemaskBatches.take() first and shows the rest itself
// (videos; photos one by one when the queue is off). Nothing here depends on page.js's own functions.
"use strict";

window.facemaskBatches = (() => {
  const POLL_MS = 700;
  const PHOTO = /\.(jpe?g|png|webp|bmp|gif|tiff?)$/i;
  const info = fetch("/info").then((response) => response.json()).catch(() => ({}));

  function section(title) {
    const element = document.createElement("section");
    element.className = "result batch";
    const heading = document.createElement("h2");
    heading.className = "result-title";
    heading.textContent = title;
    const state = document.createElement("p");
    state.className = "result-state";
    state.setAttribute("role", "status");
    const progress = document.createElement("progress");
    progress.className = "result-progress";
    progress.max = 100;
    progress.value = 0;
    const downloads = document.createElement("p");
    downloads.className = "downloads";
    element.append(heading, state, progress, downloads);
    document.getElementById("results").prepend(element);
    return { element, state, progress, downloads };
  }

  function upload(form, onProgress) {
    return new Promise((resolve, reject) => {
      const request = new XMLHttpRequest();
      request.open("POST", "/batches");
      request.upload.addEventListener("progress", (event) => {
        if (event.lengthComputable) onProgress(event.loaded / event.total);
      });
      request.addEventListener("load", () => {
        let body;
        try {
          body = JSON.parse(request.responseText);
        } catch {
          body = { error: `the service answered HTTP ${request.status} without a readable message` };
        }
        resolve({ status: request.status, body });
      });
      request.addEventListener("error", () => reject(new Error("the detection service cannot be reached")));
      request.send(form);
    });
  }

  async function follow(view, statusUrl) {
    for (;;) {
      const status = await (await fetch(statusUrl)).json();
      if (status.state === "done") {
        view.progress.hidden = true;
        const counts = Object.entries(status.counts || {}).map(([label, count]) => `${count} ${label}`).join(", ");
        view.state.textContent = `${status.photos_annotated} photo(s) annotated` +
          (status.photos_skipped ? `, ${status.photos_skipped} skipped (see faces.json)` : "") +
          (counts ? `: ${counts}.` : ".");
        const link = document.createElement("a");
        link.href = status.zip_url;
        link.textContent = "Download the annotated photos, faces.csv and faces.json (zip)";
        view.downloads.append(link);
        view.element.classList.add("done");
        return;
      }
      if (status.state === "failed" || status.error && !status.state) {
        view.progress.hidden = true;
        view.state.textContent = status.error || "The batch failed.";
        view.element.classList.add("failed");
        return;
      }
      const total = status.photos_total || 1;
      view.progress.value = Math.round(100 * (status.photos_done || 0) / total);
      view.state.textContent = status.state === "queued" ? "Waiting for a worker…"
        : `Annotating: ${status.photos_done || 0} of ${total} photos`;
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
  }

  // The photos among `files` go to the queue as one batch (two or more, queue on); returns the files left for
  // page.js to show one by one.
  async function take(files) {
    const photos = files.filter((file) => PHOTO.test(file.name) && file.size > 0);
    if (!(await info).queue || photos.length < 2) return files;
    const view = section(`${photos.length} photos`);
    const form = new FormData();
    for (const file of photos) form.append("photos", file, file.name);
    try {
      const answer = await upload(form, (fraction) => {
        view.progress.value = Math.round(fraction * 100);
        view.state.textContent = `Uploading: ${view.progress.value} %`;
      });
      if (answer.status !== 202) {
        view.progress.hidden = true;
        view.state.textContent = answer.body.error || `HTTP ${answer.status}`;
        view.element.classList.add("failed");
      } else {
        follow(view, answer.body.status_url);
      }
    } catch (error) {
      view.state.textContent = `${error.message}.`;
    }
    return files.filter((file) => !photos.includes(file));
  }

  return { take };
})();

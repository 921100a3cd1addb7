// The upload page: photos go to POST /detect?annotated=1, videos to POST /videos (progress polled).
// Plain JavaScript, no build step and nothing fetched from outside this service.
"use strict";

const VIDEO_SUFFIXES = [".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm", ".mpg", ".mpeg"];
const MAX_TABLE_ROWS = 200;
// The same colours and names as the boxes drawn by facemask/drawing.py, darkened for white text; any label the
// classifier adds later gets the amber that drawing.py gives unknown labels.
const LABEL_STYLE = {
  with_mask: ["Mask", "#0b7d1f"], mask: ["Mask", "#0b7d1f"],
  without_mask: ["No mask", "#c62828"], no_mask: ["No mask", "#c62828"],
  incorrect: ["Mask worn wrong", "#b45309"], mask_weared_incorrect: ["Mask worn wrong", "#b45309"],
  unclassified: ["Unclassified", "#5f6673"],
};
let maxUploadBytes = null;

function labelStyle(label) {
  if (LABEL_STYLE[label]) return LABEL_STYLE[label];
  const name = String(label).replace(/_/g, " ");
  return [name.charAt(0).toUpperCase() + name.slice(1), "#b45309"];
}

function stem(filename) {
  const dot = filename.lastIndexOf(".");
  return (dot > 0 ? filename.slice(0, dot) : filename) || "upload";
}

function isVideo(file) {
  const name = file.name.toLowerCase();
  return file.type.startsWith("video/") || VIDEO_SUFFIXES.some((suffix) => name.endsWith(suffix));
}

function showError(message, section) {
  const line = document.createElement("p");
  line.className = "error";
  line.textContent = message;
  document.getElementById("errors").append(line);
  if (section) {
    section.classList.add("failed");
    const state = section.querySelector(".result-state");
    state.textContent = message;
    state.classList.add("error");
  }
}

async function readJson(response) {
  try {
    return await response.json();
  } catch {
    return { error: `the service answered HTTP ${response.status} without a readable message` };
  }
}

function newSection(file) {
  const section = document.getElementById("result-template").content.firstElementChild.cloneNode(true);
  section.querySelector(".result-title").textContent = file.name;
  section.querySelector(".result-state").textContent = "Waiting…";
  document.getElementById("results").prepend(section);
  return section;
}

function fillCounts(section, counts) {
  const list = section.querySelector(".counts");
  list.replaceChildren();
  for (const [label, count] of Object.entries(counts).sort((a, b) => b[1] - a[1])) {
    const [name, colour] = labelStyle(label);
    const item = document.createElement("li");
    item.style.setProperty("--chip", colour);
    item.dataset.label = label;
    item.textContent = `${name}: ${count}`;
    list.append(item);
  }
}

// A video's people (tracks seen long enough to count), under the video: what an entrance camera is watched for.
function showPeople(section, people) {
  const parts = Object.entries(people.by_label).sort((a, b) => b[1] - a[1])
    .map(([label, count]) => `${labelStyle(label)[0]}: ${count}`);
  const caption = document.createElement("figcaption");
  caption.className = "people";
  caption.textContent = `People seen: ${people.total}` + (parts.length ? ` (${parts.join(", ")})` : "");
  section.querySelector(".result-media").append(caption);
  section.querySelector(".counts").setAttribute("aria-label", "People per label");
}

function fillTable(section, rows, withFrame) {
  const table = section.querySelector("table.faces");
  const head = table.querySelector("thead tr");
  if (withFrame && !head.querySelector(".frame-col")) {
    const th = document.createElement("th");
    th.scope = "col";
    th.className = "frame-col";
    th.textContent = "Time (s)";
    head.insertBefore(th, head.children[1]);
  }
  const body = table.querySelector("tbody");
  body.replaceChildren();
  rows.slice(0, MAX_TABLE_ROWS).forEach((face, index) => {
    const [name, colour] = labelStyle(face.label);
    const cells = [face.track_id == null ? String(index + 1) : `#${face.track_id}`];  // videos: the person's track
    if (withFrame) cells.push(face.time_s.toFixed(2));
    cells.push(null,
      face.score == null ? "—" : `${(face.score * 100).toFixed(1)} %`,
      face.box.map((v) => Math.round(v)).join(", "),
      face.det_score.toFixed(2));
    const row = document.createElement("tr");
    row.dataset.label = face.label;
    for (const text of cells) {
      const cell = document.createElement("td");
      if (text === null) {
        const swatch = document.createElement("span");
        swatch.className = "swatch";
        swatch.style.setProperty("--chip", colour);
        swatch.setAttribute("aria-hidden", "true");
        cell.append(swatch, name);
        if (face.status === "unclassified" && face.error) cell.title = face.error;
      } else {
        cell.textContent = text;
      }
      row.append(cell);
    }
    body.append(row);
  });
  table.querySelector("caption").textContent = rows.length > MAX_TABLE_ROWS
    ? `Faces found: first ${MAX_TABLE_ROWS} of ${rows.length} (all in the JSON)`
    : `Faces found: ${rows.length}`;
  table.hidden = rows.length === 0;
}

function addDownload(section, href, filename, text) {
  const link = document.createElement("a");
  link.href = href;
  link.download = filename;
  link.textContent = text;
  section.querySelector(".downloads").append(link);
}

function describeFaces(count) {
  return count === 0 ? "No face found." : `${count} face${count === 1 ? "" : "s"} found.`;
}

async function processImage(file, section) {
  section.querySelector(".result-state").textContent = "Analysing…";
  const form = new FormData();
  form.append("image", file, file.name);
  let response;
  try {
    response = await fetch("/detect?annotated=1", { method: "POST", body: form });
  } catch (error) {
    showError(`${file.name}: the detection service cannot be reached (${error.message}).`, section);
    return;
  }
  const body = await readJson(response);
  if (response.status !== 200 && response.status !== 503) {
    showError(`${file.name}: ${body.error || `HTTP ${response.status}`}`, section);
    return;
  }
  const { annotated_image: annotated, ...record } = body;
  if (annotated) {
    const image = document.createElement("img");
    image.src = annotated;
    image.alt = `${file.name} with every face marked: ${describeFaces(body.faces.length)}`;
    image.className = "annotated";
    section.querySelector(".result-media").replaceChildren(image);
    addDownload(section, annotated, `${stem(file.name)}_annotated.jpg`, "Download annotated image");
  }
  const json = URL.createObjectURL(new Blob([JSON.stringify(record, null, 2)], { type: "application/json" }));
  addDownload(section, json, `${stem(file.name)}.json`, "Download JSON");
  fillCounts(section, body.counts);
  fillTable(section, body.faces, false);
  if (response.status === 503) {
    showError(`${file.name}: the classifier is not answering, so the ${body.faces.length} face(s) found are ` +
      `listed as unclassified. Try again when it is back. (${body.error})`, section);
  } else {
    section.querySelector(".result-state").textContent = `${describeFaces(body.faces.length)} ` +
      `Detection ${body.timing_ms.detect} ms, classification ${body.timing_ms.classify} ms.`;
  }
  section.classList.add("done");
}

function uploadWithProgress(url, form, onProgress) {
  return new Promise((resolve, reject) => {
    const request = new XMLHttpRequest();
    request.open("POST", url);
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

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function processVideo(file, section) {
  const state = section.querySelector(".result-state");
  const progress = section.querySelector(".result-progress");
  progress.hidden = false;
  const form = new FormData();
  form.append("video", file, file.name);
  let upload;
  try {
    upload = await uploadWithProgress("/videos", form, (fraction) => {
      progress.value = Math.round(fraction * 100);
      state.textContent = `Uploading: ${progress.value} %`;
    });
  } catch (error) {
    showError(`${file.name}: ${error.message}.`, section);
    progress.hidden = true;
    return;
  }
  if (upload.status !== 202) {
    showError(`${file.name}: ${upload.body.error || `HTTP ${upload.status}`}`, section);
    progress.hidden = true;
    return;
  }
  let status = upload.body;
  progress.value = 0;
  while (status.state === "queued" || status.state === "running") {
    state.textContent = status.state === "queued"
      ? "Waiting for the previous video to finish…"
      : `Annotating frame ${status.frames_done} of ${status.frames_total}`;
    progress.value = Math.round((100 * status.frames_done) / Math.max(1, status.frames_total));
    await sleep(500);
    try {
      const response = await fetch(upload.body.status_url);
      status = await readJson(response);
      if (!response.ok) status = { state: "failed", error: status.error || `HTTP ${response.status}` };
    } catch (error) {
      status = { state: "failed", error: `the detection service cannot be reached (${error.message})` };
    }
  }
  progress.hidden = true;
  if (status.state !== "done") {
    showError(`${file.name}: ${status.error || "the video could not be annotated"}`, section);
    return;
  }
  const video = document.createElement("video");
  video.src = status.video_url;
  video.controls = true;
  video.setAttribute("aria-label", `${file.name} with every face marked`);
  section.querySelector(".result-media").replaceChildren(video);
  addDownload(section, status.video_url, `${stem(file.name)}_annotated.webm`, "Download annotated video");
  addDownload(section, status.json_url, `${stem(file.name)}.json`, "Download JSON");
  fillCounts(section, status.counts);
  if (status.people) showPeople(section, status.people);
  const record = await (await fetch(status.json_url)).json();
  const rows = record.frames.flatMap((frame) => frame.faces.map((face) => ({ ...face, time_s: frame.time_s })));
  fillTable(section, rows, true);
  state.textContent = `${status.frames_total} frames, faces in ${status.frames_with_faces} of them.`;
  if (status.classifier_errors) {
    showError(`${file.name}: the classifier did not answer for ${status.classifier_errors} frame(s); their faces ` +
      `are listed as unclassified. (${status.error})`, section);
  }
  section.classList.add("done");
}

async function handleFiles(fileList) {
  const files = Array.from(fileList);
  document.getElementById("errors").replaceChildren();
  for (const file of files) {
    const section = newSection(file);
    if (maxUploadBytes && file.size > maxUploadBytes) {
      showError(`${file.name}: too large (${(file.size / 1e6).toFixed(1)} MB); the limit is ` +
        `${(maxUploadBytes / 1e6).toFixed(0)} MB.`, section);
      continue;
    }
    if (file.size === 0) {
      showError(`${file.name}: the file is empty.`, section);
      continue;
    }
    await (isVideo(file) ? processVideo(file, section) : processImage(file, section));
  }
}

async function checkService() {
  const line = document.getElementById("service-status");
  try {
    const info = await (await fetch("/info")).json();
    maxUploadBytes = info.max_upload_bytes;
    const ready = await fetch("/ready");
    line.classList.toggle("down", !ready.ok);
    line.textContent = ready.ok
      ? "Ready: each face is marked mask / no mask with its probability."
      : "The classifier is not answering: faces will be found but not classified until it is back.";
  } catch (error) {
    line.classList.add("down");
    line.textContent = `The detection service cannot be reached (${error.message}).`;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  const input = document.getElementById("file-input");
  const zone = document.getElementById("drop-zone");
  input.addEventListener("change", () => {
    if (input.files.length) handleFiles(input.files).finally(() => { input.value = ""; });
  });
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("dragging");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("dragging");
    if (event.dataTransfer.files.length) handleFiles(event.dataTransfer.files);
  });
  checkService();
});

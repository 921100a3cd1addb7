// The upload page: photos go to POST /detect?annotated=1, videos to POST /videos (progress polled).
// Plain JavaScript, no build step and nothing fetched from outside this service. No inline script or style in the
// HTML (the service's Content-Security-Policy): styles computed here are set through element.style.
"use strict";

const VIDEO_SUFFIXES = [".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm", ".mpg", ".mpeg"];
const MAX_TABLE_ROWS = 200;
// A multipart upload carries the file plus its form envelope (boundaries, headers, the name): the service's limit
// counts the whole body, so the page keeps this much of it free rather than let a file pass here and fail there.
const FORM_ENVELOPE_BYTES = 1000;
const READY_POLL_MS = 5000;
const STORAGE_KEY = "facemask-results";
const CLASSIFIER_DOWN = "The classifier is not answering";
// The same colours and names as the boxes drawn by facemask/core/drawing.py, darkened for white text; any label the
// classifier adds later gets the amber that drawing.py gives unknown labels.
const LABEL_STYLE = {
  with_mask: ["Mask", "#0b7d1f"], mask: ["Mask", "#0b7d1f"],
  without_mask: ["No mask", "#c62828"], no_mask: ["No mask", "#c62828"],
  incorrect: ["Mask worn wrong", "#b45309"], mask_weared_incorrect: ["Mask worn wrong", "#b45309"],
  unclassified: ["Unclassified", "#5f6673"],
};
let maxUploadBytes = null;
let minConfidence = 0;
let stored = [];  // what is shown, kept in sessionStorage so a reload brings it back

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

const bytes = (count) => `${count.toLocaleString("en")} bytes`;
const seconds = (value) => `${value.toFixed(1)} s`;

// The card's title is the file name, so a service message that starts with it loses that prefix.
function withoutName(message, name) {
  const text = String(message || "");
  return text.startsWith(`${name}: `) ? text.slice(name.length + 2) : text;
}

// One place for a card's error: its state line, announced once.
function showError(section, message) {
  section.classList.add("failed");
  const state = section.querySelector(".result-state");
  state.textContent = message;
  state.classList.add("error");
  state.setAttribute("role", "alert");
}

function saveResults() {
  while (true) {
    try {
      sessionStorage.setItem(STORAGE_KEY, JSON.stringify(stored));
      return;
    } catch {
      if (!stored.length) return;
      stored.shift();  // over the browser's quota: the oldest results are not kept across a reload
    }
  }
}

function remember(entry) {
  stored.push(entry);
  saveResults();
  updateSummary();
}

async function readJson(response) {
  try {
    return await response.json();
  } catch {
    return { error: `the service answered HTTP ${response.status} without a readable message` };
  }
}

function newSection(name) {
  const section = document.getElementById("result-template").content.firstElementChild.cloneNode(true);
  section.querySelector(".result-title").textContent = name;
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

function labelCell(label, title) {
  const [name, colour] = labelStyle(label);
  const cell = document.createElement("td");
  const swatch = document.createElement("span");
  swatch.className = "swatch";
  swatch.style.setProperty("--chip", colour);
  swatch.setAttribute("aria-hidden", "true");
  cell.append(swatch, name);
  if (title) cell.title = title;
  return cell;
}

function textCells(row, texts) {
  for (const text of texts) {
    const cell = document.createElement("td");
    cell.textContent = text;
    row.append(cell);
  }
}

// Hovering or focusing a row highlights its numbered box, and the other way round.
function pair(row, mark) {
  const on = () => { row.classList.add("highlight"); mark.classList.add("highlight"); };
  const off = () => { row.classList.remove("highlight"); mark.classList.remove("highlight"); };
  for (const element of [row, mark]) {
    element.addEventListener("mouseenter", on);
    element.addEventListener("mouseleave", off);
  }
  row.addEventListener("focus", on);
  row.addEventListener("blur", off);
}

// The annotated photo with a numbered outline over each face; the numbers are the table's.
function showPicture(section, name, picture, faces) {
  const stage = document.createElement("div");
  stage.className = "stage";
  stage.tabIndex = 0;
  stage.setAttribute("role", "button");
  stage.setAttribute("aria-label", `${name}: open full size`);
  const image = document.createElement("img");
  image.src = picture;
  image.alt = `${name} with every face marked: ${describeFaces(faces.length)}`;
  image.className = "annotated";
  stage.append(image);
  const marks = [];
  const place = () => {
    const [width, height] = [image.naturalWidth, image.naturalHeight];
    faces.forEach((face, index) => {
      const mark = marks[index];
      const [x1, y1, x2, y2] = face.box;
      mark.style.left = `${(100 * Math.max(0, x1)) / width}%`;
      mark.style.top = `${(100 * Math.max(0, y1)) / height}%`;
      mark.style.width = `${(100 * (Math.min(width, x2) - Math.max(0, x1))) / width}%`;
      mark.style.height = `${(100 * (Math.min(height, y2) - Math.max(0, y1))) / height}%`;
    });
  };
  faces.forEach((face, index) => {
    const mark = document.createElement("div");
    mark.className = "mark";
    mark.dataset.index = String(index + 1);
    mark.dataset.score = String(face.score ?? 1);
    const badge = document.createElement("span");
    badge.className = "badge";
    badge.textContent = String(index + 1);
    badge.style.background = labelStyle(face.label)[1];
    mark.append(badge);
    stage.append(mark);
    marks.push(mark);
  });
  if (image.complete && image.naturalWidth) place(); else image.addEventListener("load", place, { once: true });
  stage.addEventListener("click", () => openViewer(stage));
  stage.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      openViewer(stage);
    }
  });
  section.querySelector(".result-media").replaceChildren(stage);
  return marks;
}

function fillFaceTable(section, faces, marks) {
  const table = section.querySelector("table.faces");
  const body = table.querySelector("tbody");
  body.replaceChildren();
  faces.slice(0, MAX_TABLE_ROWS).forEach((face, index) => {
    const row = document.createElement("tr");
    row.dataset.label = face.label;
    row.dataset.index = String(index + 1);
    row.dataset.score = String(face.score ?? 1);
    row.tabIndex = 0;
    textCells(row, [String(index + 1)]);
    row.append(labelCell(face.label, face.status === "unclassified" ? "not classified" : ""));
    textCells(row, [face.score == null ? "—" : `${(face.score * 100).toFixed(1)} %`,
      face.box.map((v) => Math.round(v)).join(", ")]);
    body.append(row);
    if (marks[index]) pair(row, marks[index]);
  });
  table.querySelector("caption").dataset.base = faces.length > MAX_TABLE_ROWS
    ? `Faces found: first ${MAX_TABLE_ROWS} of ${faces.length} (all in the JSON)`
    : `Faces found: ${faces.length}`;
  table.hidden = faces.length === 0;
  applyMinConfidence(section);
}

// Faces below the minimum confidence leave the table and their box is greyed out on the picture (photos; a video's
// people carry no single probability).
function applyMinConfidence(root) {
  for (const element of root.querySelectorAll("tr[data-score], .mark[data-score]")) {
    element.classList.toggle("filtered", Number(element.dataset.score) < minConfidence);
  }
  const sections = root.matches("section.result") ? [root] : root.querySelectorAll("section.result.photo");
  for (const section of sections) {
    const caption = section.querySelector("table.faces caption");
    const rows = section.querySelectorAll("table.faces tbody tr").length;
    const hidden = section.querySelectorAll("table.faces tbody tr.filtered").length;
    caption.textContent = caption.dataset.base +
      (hidden ? ` (${hidden} of ${rows} below ${Math.round(minConfidence * 100)} %)` : "");
  }
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

function photoMessage(record, classified) {
  if (!classified) {
    return `${CLASSIFIER_DOWN}: the ${record.faces.length} face(s) found are listed as unclassified. ` +
      "Try again when it is back.";
  }
  return `${describeFaces(record.faces.length)} Detection ${record.timing_ms.detect} ms, classification ` +
    `${record.timing_ms.classify} ms.`;
}

function renderPhoto(section, entry) {
  const { record, picture, name, classified } = entry;
  section.classList.add("photo");
  const marks = picture ? showPicture(section, name, picture, record.faces) : [];
  if (picture) addDownload(section, picture, `${stem(name)}_annotated.jpg`, "Download annotated image");
  const json = URL.createObjectURL(new Blob([JSON.stringify(record, null, 2)], { type: "application/json" }));
  addDownload(section, json, `${stem(name)}.json`, "Download JSON");
  fillCounts(section, record.counts);
  fillFaceTable(section, record.faces, marks);
  if (classified) {
    section.querySelector(".result-state").textContent = photoMessage(record, true);
  } else {
    showError(section, photoMessage(record, false));
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

// Sends one file with a progress bar while its bytes go up, then says what the service is doing.
async function send(section, url, field, file, afterUpload) {
  const state = section.querySelector(".result-state");
  const progress = section.querySelector(".result-progress");
  progress.hidden = false;
  progress.value = 0;
  const form = new FormData();
  form.append(field, file, file.name);
  try {
    return await uploadWithProgress(url, form, (fraction) => {
      progress.value = Math.round(fraction * 100);
      state.textContent = fraction < 1 ? `Uploading: ${progress.value} %` : afterUpload;
    });
  } catch (error) {
    showError(section, `${error.message}.`);
    return null;
  } finally {
    progress.hidden = true;
  }
}

function refusal(upload, name) {
  if (upload.status === 503) return `${CLASSIFIER_DOWN}. Try again when it is back.`;
  if (upload.status === 413) {
    return `Too large: the service takes uploads up to ${bytes(maxUploadBytes || 0)}.`;
  }
  return withoutName(upload.body.error, name) || `HTTP ${upload.status}`;
}

async function processImage(file, section) {
  const upload = await send(section, "/detect?annotated=1", "image", file, "Analysing…");
  if (!upload) return;
  if (upload.status !== 200 && !(upload.status === 503 && upload.body.faces)) {
    showError(section, refusal(upload, file.name));
    if (upload.status === 503) checkReady();
    return;
  }
  const { annotated_image: picture, error, ...record } = upload.body;
  const entry = { kind: "photo", name: file.name, record, picture, classified: upload.status === 200 };
  if (!entry.classified) checkReady();
  renderPhoto(section, entry);
  remember(entry);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// The people of a video: tracks seen long enough to count, with when they were on screen.
function showPeople(section, record, status) {
  const people = status.people || { total: 0, by_label: {} };
  const parts = Object.entries(people.by_label).sort((a, b) => b[1] - a[1])
    .map(([label, count]) => `${labelStyle(label)[0]}: ${count}`);
  const caption = document.createElement("figcaption");
  caption.className = "people";
  caption.textContent = `People seen: ${people.total}` + (parts.length ? ` (${parts.join(", ")})` : "");
  section.querySelector(".result-media").append(caption);
  section.querySelector(".counts").setAttribute("aria-label", "People per label");

  const tracks = ((record.summary || {}).tracks || []).filter((track) => track.counted);
  const video = section.querySelector("video");
  const table = section.querySelector("table.faces");
  table.querySelector("thead tr").replaceChildren(...["Person", "Label", "First seen", "Last seen", "Visible"]
    .map((text) => { const th = document.createElement("th"); th.scope = "col"; th.textContent = text; return th; }));
  const body = table.querySelector("tbody");
  body.replaceChildren();
  for (const track of tracks) {
    const row = document.createElement("tr");
    row.dataset.label = track.label;
    row.dataset.track = String(track.track_id);
    row.tabIndex = 0;
    row.title = "Show this person in the video";
    textCells(row, [`#${track.track_id}`]);
    row.append(labelCell(track.label));
    textCells(row, [seconds(track.first_time_s), seconds(track.last_time_s), seconds(track.seconds_on_screen)]);
    const seek = () => {
      video.currentTime = track.first_time_s;
      video.focus();
    };
    row.addEventListener("click", seek);
    row.addEventListener("keydown", (event) => {
      if (event.key === "Enter") seek();
    });
    body.append(row);
  }
  table.querySelector("caption").textContent = `People: ${tracks.length} (click one to see them in the video)`;
  table.hidden = tracks.length === 0;
  section.querySelector(".chart-wrap").replaceChildren(peopleChart(record, tracks));
}

const SVG = "http://www.w3.org/2000/svg";
function svgElement(name, attributes, text) {
  const element = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, String(value));
  if (text !== undefined) element.textContent = text;
  return element;
}

// People on screen per label over the video's time, one line each, drawn here as inline SVG.
function peopleChart(record, tracks) {
  const counted = new Map(tracks.map((track) => [track.track_id, track.label]));
  const frames = record.frames || [];
  const labels = [...new Set(tracks.map((track) => track.label))];
  const series = Object.fromEntries(labels.map((label) => [label, []]));
  let peak = 1;
  const end = Math.max(0.001, ...frames.map((frame) => frame.time_s));
  for (const frame of frames) {
    const present = {};
    for (const face of frame.faces) {
      const label = counted.get(face.track_id);
      if (label !== undefined) present[label] = (present[label] || 0) + 1;
    }
    for (const label of labels) {
      series[label].push([frame.time_s, present[label] || 0]);
      peak = Math.max(peak, present[label] || 0);
    }
  }
  const [width, height, left, bottom] = [320, 120, 28, 22];
  const x = (t) => left + ((width - left - 6) * t) / end;
  const y = (n) => height - bottom - ((height - bottom - 8) * n) / peak;
  const svg = svgElement("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img",
    "aria-label": `People on screen per label over ${seconds(end)}` });
  svg.append(svgElement("line", { x1: left, y1: y(0), x2: width - 6, y2: y(0), class: "axis" }),
    svgElement("line", { x1: left, y1: y(0), x2: left, y2: y(peak), class: "axis" }),
    svgElement("text", { x: left - 4, y: y(peak) + 4, "text-anchor": "end" }, String(peak)),
    svgElement("text", { x: left - 4, y: y(0) + 4, "text-anchor": "end" }, "0"),
    svgElement("text", { x: width - 6, y: height - 6, "text-anchor": "end" }, seconds(end)),
    svgElement("text", { x: left, y: height - 6 }, "0 s"));
  for (const label of labels) {
    const points = series[label].map(([t, n]) => `${x(t).toFixed(1)},${y(n).toFixed(1)}`).join(" ");
    const line = svgElement("polyline", { points, fill: "none", stroke: labelStyle(label)[1], "stroke-width": 2,
      "data-label": label });
    line.append(svgElement("title", {}, labelStyle(label)[0]));
    svg.append(line);
  }
  const figure = document.createElement("figure");
  figure.className = "chart-figure";
  const caption = document.createElement("figcaption");
  caption.append("People on screen over time:");
  for (const label of labels) {
    const [name, colour] = labelStyle(label);
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.setProperty("--chip", colour);
    swatch.setAttribute("aria-hidden", "true");
    caption.append(" ", swatch, name);
  }
  figure.append(svg, caption);
  return figure;
}

async function renderVideo(section, entry) {
  const { status, name } = entry;
  section.classList.add("video");
  let record;
  try {
    const response = await fetch(status.json_url);
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    record = await response.json();
  } catch {
    showError(section, "This video's result is no longer on the service (results are kept for an hour).");
    return false;
  }
  const video = document.createElement("video");
  video.src = status.video_url;
  video.controls = true;
  video.preload = "metadata";
  video.setAttribute("aria-label", `${name} with every face marked`);
  section.querySelector(".result-media").replaceChildren(video);
  addDownload(section, status.video_url, `${stem(name)}_annotated.webm`, "Download annotated video");
  // The service names the JSON <name>_annotated.json; the link says the same name.
  addDownload(section, status.json_url, `${stem(name)}_annotated.json`, "Download JSON");
  fillCounts(section, status.counts);
  showPeople(section, record, status);
  section.querySelector(".result-state").textContent =
    `${status.frames_total} frames, faces in ${status.frames_with_faces} of them.`;
  if (status.classifier_errors) {
    showError(section, `${CLASSIFIER_DOWN} for ${status.classifier_errors} frame(s): their faces are listed as ` +
      "unclassified.");
  }
  section.classList.add("done");
  return true;
}

async function processVideo(file, section) {
  const upload = await send(section, "/videos", "video", file, "Starting…");
  if (!upload) return;
  if (upload.status !== 202) {
    showError(section, refusal(upload, file.name));
    if (upload.status === 503) checkReady();
    return;
  }
  const state = section.querySelector(".result-state");
  const progress = section.querySelector(".result-progress");
  progress.hidden = false;
  progress.value = 0;
  let status = upload.body;
  let polled = false;
  while (status.state === "queued" || status.state === "running") {
    // Every job starts queued: only one still queued at a poll is waiting for another video.
    if (status.state === "running") {
      state.textContent = `Annotating frame ${status.frames_done} of ${status.frames_total}`;
    } else if (polled) {
      state.textContent = "Waiting for the previous video to finish…";
    }
    progress.value = Math.round((100 * status.frames_done) / Math.max(1, status.frames_total));
    await sleep(500);
    polled = true;
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
    showError(section, withoutName(status.error, file.name) || "The video could not be annotated.");
    return;
  }
  const entry = { kind: "video", name: file.name, status };
  if (await renderVideo(section, entry)) remember(entry);
}

async function handleFiles(fileList) {
  // With the queue on, batches.js sends many photos as one batch job; the rest are shown here one by one.
  const files = window.facemaskBatches ? await window.facemaskBatches.take(Array.from(fileList)) : Array.from(fileList);
  for (const file of files) {
    const section = newSection(file.name);
    if (maxUploadBytes && file.size + FORM_ENVELOPE_BYTES > maxUploadBytes) {
      showError(section, `Too large: ${bytes(file.size)}. The service takes uploads up to ` +
        `${bytes(maxUploadBytes)}, of which about ${bytes(FORM_ENVELOPE_BYTES)} go to the form's envelope.`);
      continue;
    }
    if (file.size === 0) {
      showError(section, "The file is empty.");
      continue;
    }
    await (isVideo(file) ? processVideo(file, section) : processImage(file, section));
  }
}

// A summary across every result shown: photos, faces per label, videos and their people.
function updateSummary() {
  const photos = stored.filter((entry) => entry.kind === "photo");
  const videos = stored.filter((entry) => entry.kind === "video");
  const box = document.getElementById("batch-summary");
  box.hidden = stored.length === 0;
  if (box.hidden) return;
  const counts = {};
  let faces = 0;
  for (const entry of photos) {
    for (const face of entry.record.faces) {
      counts[face.label] = (counts[face.label] || 0) + 1;
      faces += 1;
    }
  }
  const parts = Object.entries(counts).sort((a, b) => b[1] - a[1])
    .map(([label, count]) => `${labelStyle(label)[0]}: ${count}`);
  const sentences = [];
  if (photos.length) {
    sentences.push(`${photos.length === 1 ? "1 photo" : `All ${photos.length} photos`}: ${faces} ` +
      `face${faces === 1 ? "" : "s"}` + (parts.length ? ` (${parts.join(", ")})` : "") + ".");
  }
  if (videos.length) {
    const people = videos.reduce((sum, entry) => sum + ((entry.status.people || {}).total || 0), 0);
    sentences.push(`${videos.length} video${videos.length === 1 ? "" : "s"}: ${people} people.`);
  }
  box.querySelector(".summary-text").textContent = sentences.join(" ");
}

// Not fetch(dataUrl): the service's Content-Security-Policy lets the page connect to itself only.
function dataUrlBytes(url) {
  const binary = atob(url.slice(url.indexOf(",") + 1));
  return Uint8Array.from(binary, (char) => char.charCodeAt(0));
}

const CSV_COLUMNS = ["file", "face", "label", "probability", "x1", "y1", "x2", "y2", "detector_score", "status"];
function csvLine(values) {
  return values.map((value) => {
    const text = value == null ? "" : String(value);
    return /[",\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
  }).join(",");
}

// One zip of everything shown: annotated files and JSON records, faces.csv for the photos, people.csv for the videos.
async function downloadEverything() {
  const files = [];
  const taken = new Set();
  const unique = (name) => {
    let candidate = name;
    for (let n = 2; taken.has(candidate); n += 1) candidate = name.replace(/(\.[^.]*)?$/, (suffix) => `_${n}${suffix}`);
    taken.add(candidate);
    return candidate;
  };
  const text = (value) => new TextEncoder().encode(value);
  const faces = [csvLine(CSV_COLUMNS)];
  const people = [csvLine(["file", "person", "label", "first_seen_s", "last_seen_s", "visible_s"])];
  for (const entry of stored) {
    const base = stem(entry.name);
    if (entry.kind === "photo") {
      if (entry.picture) files.push([unique(`${base}_annotated.jpg`), dataUrlBytes(entry.picture)]);
      files.push([unique(`${base}.json`), text(JSON.stringify(entry.record, null, 2))]);
      entry.record.faces.forEach((face, index) => faces.push(csvLine([entry.name, index + 1, face.label, face.score,
        ...face.box.map((v) => Math.round(v)), face.det_score, face.status])));
    } else {
      for (const [url, suffix] of [[entry.status.video_url, "webm"], [entry.status.json_url, "json"]]) {
        const response = await fetch(url);
        if (!response.ok) continue;  // expired on the service: the rest still goes into the zip
        files.push([unique(`${base}_annotated.${suffix}`), new Uint8Array(await response.arrayBuffer())]);
        if (suffix === "json") {
          const record = JSON.parse(new TextDecoder().decode(files[files.length - 1][1]));
          for (const track of ((record.summary || {}).tracks || []).filter((t) => t.counted)) {
            people.push(csvLine([entry.name, track.track_id, track.label, track.first_time_s, track.last_time_s,
              track.seconds_on_screen]));
          }
        }
      }
    }
  }
  files.push(["faces.csv", text(faces.join("\r\n") + "\r\n")]);
  if (people.length > 1) files.push(["people.csv", text(people.join("\r\n") + "\r\n")]);
  const link = document.createElement("a");
  link.href = URL.createObjectURL(zipStored(files));
  link.download = "facemask-results.zip";
  document.body.append(link);
  link.click();
  link.remove();
}

// A zip without compression (the JPEG and WebM inside are compressed already): the format's local headers, central
// directory and CRC-32, written here because the page loads nothing from outside the service.
const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k += 1) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
function crc32(data) {
  let crc = 0xffffffff;
  for (const byte of data) crc = CRC_TABLE[(crc ^ byte) & 0xff] ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

function zipStored(files) {
  const parts = [];
  const directory = [];
  let offset = 0;
  const now = new Date();
  const time = (now.getHours() << 11) | (now.getMinutes() << 5) | (now.getSeconds() >> 1);
  const date = ((now.getFullYear() - 1980) << 9) | ((now.getMonth() + 1) << 5) | now.getDate();
  for (const [name, data] of files) {
    const encodedName = new TextEncoder().encode(name);
    const crc = crc32(data);
    const header = (signature, extra) => {
      const view = new DataView(new ArrayBuffer(extra ? 46 : 30));
      let at = 0;
      const u32 = (value) => { view.setUint32(at, value, true); at += 4; };
      const u16 = (value) => { view.setUint16(at, value, true); at += 2; };
      u32(signature);
      if (extra) u16(20);  // made by: version 2.0
      u16(20); u16(0x0800); u16(0); u16(time); u16(date);  // version needed, UTF-8 names, stored
      u32(crc); u32(data.length); u32(data.length); u16(encodedName.length); u16(0);
      if (extra) { u16(0); u16(0); u16(0); u32(0); u32(offset); }
      return new Uint8Array(view.buffer);
    };
    const local = header(0x04034b50, false);
    directory.push(header(0x02014b50, true), encodedName);
    parts.push(local, encodedName, data);
    offset += local.length + encodedName.length + data.length;
  }
  const directorySize = directory.reduce((sum, part) => sum + part.length, 0);
  const end = new DataView(new ArrayBuffer(22));
  end.setUint32(0, 0x06054b50, true);
  end.setUint16(8, files.length, true);
  end.setUint16(10, files.length, true);
  end.setUint32(12, directorySize, true);
  end.setUint32(16, offset, true);
  return new Blob([...parts, ...directory, new Uint8Array(end.buffer)], { type: "application/zip" });
}

async function checkReady() {
  const line = document.getElementById("service-status");
  try {
    const ready = await fetch("/ready");
    line.classList.toggle("down", !ready.ok);
    line.classList.toggle("ready", ready.ok);
    line.textContent = ready.ok
      ? "Ready: each face is marked mask, no mask or mask worn wrong, with its probability."
      : `${CLASSIFIER_DOWN}: faces will be found but not classified until it is back.`;
  } catch {
    line.classList.add("down");
    line.classList.remove("ready");
    line.textContent = "The detection service cannot be reached.";
  }
}

async function loadInfo() {
  try {
    const info = await (await fetch("/info")).json();
    maxUploadBytes = info.max_upload_bytes;
    const minutes = info.max_video_frames / 30 / 60;
    document.getElementById("limits").textContent = `Up to ${(maxUploadBytes / 1e6).toLocaleString("en")} MB ` +
      `per file; videos up to ${info.max_video_frames.toLocaleString("en")} frames ` +
      `(${minutes >= 1 ? `${minutes.toFixed(minutes % 1 ? 1 : 0)} min` : `${Math.round(minutes * 60)} s`} at 30 ` +
      "frames/s).";
  } catch {
    // checkReady says the service cannot be reached
  }
}

async function loadExamples() {
  let samples = [];
  try {
    samples = (await (await fetch("/samples")).json()).samples || [];
  } catch {
    return;
  }
  const list = document.getElementById("example-list");
  for (const sample of samples) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "example";
    button.setAttribute("aria-label", `Try the example ${sample.name}`);
    const thumbnail = document.createElement("img");
    thumbnail.src = sample.url;
    thumbnail.alt = "";
    button.append(thumbnail, sample.name.replace(/\.jpg$/, "").replace(/_/g, " "));
    button.addEventListener("click", async () => {
      const blob = await (await fetch(sample.url)).blob();
      handleFiles([new File([blob], sample.name, { type: blob.type || "image/jpeg" })]);
    });
    list.append(button);
  }
  document.getElementById("examples").hidden = samples.length === 0;
}

// Full size with zoom (buttons, wheel) and pan (drag, scroll bars, arrow keys).
let zoom = 1;
function setZoom(value) {
  const pane = document.getElementById("viewer-pane");
  const stage = pane.firstElementChild;
  if (!stage) return;
  const image = stage.querySelector("img");
  const fit = Math.min(1, (pane.clientWidth - 4) / image.naturalWidth, (pane.clientHeight - 4) / image.naturalHeight);
  zoom = value === "fit" ? fit : Math.min(8, Math.max(Math.min(fit, 0.1), value));
  stage.style.width = `${Math.round(image.naturalWidth * zoom)}px`;
  document.getElementById("zoom-value").textContent = `${Math.round(zoom * 100)} %`;
}

function openViewer(stage) {
  const viewer = document.getElementById("viewer");
  const copy = stage.cloneNode(true);
  copy.removeAttribute("role");
  copy.removeAttribute("tabindex");
  copy.classList.add("zoomed");
  document.getElementById("viewer-pane").replaceChildren(copy);
  viewer.showModal();
  setZoom(1);
}

function setUpViewer() {
  const viewer = document.getElementById("viewer");
  const pane = document.getElementById("viewer-pane");
  document.getElementById("zoom-in").addEventListener("click", () => setZoom(zoom * 1.5));
  document.getElementById("zoom-out").addEventListener("click", () => setZoom(zoom / 1.5));
  document.getElementById("zoom-fit").addEventListener("click", () => setZoom("fit"));
  document.getElementById("viewer-close").addEventListener("click", () => viewer.close());
  pane.addEventListener("wheel", (event) => {
    event.preventDefault();
    setZoom(zoom * (event.deltaY < 0 ? 1.2 : 1 / 1.2));
  }, { passive: false });
  let drag = null;
  pane.addEventListener("pointerdown", (event) => {
    drag = { x: event.clientX, y: event.clientY, left: pane.scrollLeft, top: pane.scrollTop };
    pane.setPointerCapture(event.pointerId);
  });
  pane.addEventListener("pointermove", (event) => {
    if (!drag) return;
    pane.scrollLeft = drag.left - (event.clientX - drag.x);
    pane.scrollTop = drag.top - (event.clientY - drag.y);
  });
  pane.addEventListener("pointerup", () => { drag = null; });
}

// Webcam, live: one frame at a time goes to POST /detect (the next when the answer is back), the boxes are drawn
// over the video, and a face keeps its label unless most of its last few frames say otherwise.
const WEBCAM_WIDTH = 640;
const LABEL_VOTES = 5;
const webcam = { stream: null, faces: [], answered: [], running: false };

function overlap(a, b) {
  const width = Math.min(a[2], b[2]) - Math.max(a[0], b[0]);
  const height = Math.min(a[3], b[3]) - Math.max(a[1], b[1]);
  if (width <= 0 || height <= 0) return 0;
  const area = (box) => (box[2] - box[0]) * (box[3] - box[1]);
  return (width * height) / (area(a) + area(b) - width * height);
}

function steadyLabels(faces) {
  const previous = webcam.faces;
  const steady = faces.map((face) => {
    const match = previous.reduce((best, old) => (overlap(old.box, face.box) > overlap(best?.box || [0, 0, 0, 0],
      face.box) ? old : best), null);
    const votes = [...(match && overlap(match.box, face.box) > 0.3 ? match.votes : []), face.label]
      .slice(-LABEL_VOTES);
    const tally = {};
    for (const label of votes) tally[label] = (tally[label] || 0) + 1;
    const leader = Object.entries(tally).sort((a, b) => b[1] - a[1])[0][0];
    const shown = match && tally[match.shown] * 2 >= votes.length ? match.shown : leader;
    return { ...face, votes, shown };
  });
  webcam.faces = steady;
  return steady;
}

function drawWebcamFaces(faces, width, height) {
  const layer = document.getElementById("webcam-marks");
  layer.replaceChildren(...faces.map((face) => {
    const [x1, y1, x2, y2] = face.box;
    const mark = document.createElement("div");
    mark.className = "mark";
    mark.dataset.label = face.shown;
    const [name, colour] = labelStyle(face.shown);
    mark.style.left = `${(100 * x1) / width}%`;
    mark.style.top = `${(100 * y1) / height}%`;
    mark.style.width = `${(100 * (x2 - x1)) / width}%`;
    mark.style.height = `${(100 * (y2 - y1)) / height}%`;
    mark.style.borderColor = colour;
    const badge = document.createElement("span");
    badge.className = "badge";
    badge.style.background = colour;
    badge.textContent = name;
    mark.append(badge);
    return mark;
  }));
}

async function webcamLoop() {
  const video = document.getElementById("webcam-video");
  const state = document.getElementById("webcam-state");
  const canvas = document.createElement("canvas");
  while (webcam.running) {
    if (!video.videoWidth) {
      await sleep(50);
      continue;
    }
    const scale = Math.min(1, WEBCAM_WIDTH / video.videoWidth);
    canvas.width = Math.round(video.videoWidth * scale);
    canvas.height = Math.round(video.videoHeight * scale);
    canvas.getContext("2d").drawImage(video, 0, 0, canvas.width, canvas.height);
    const frame = await new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.85));
    const form = new FormData();
    form.append("image", frame, "webcam.jpg");
    let body = null;
    try {
      const response = await fetch("/detect", { method: "POST", body: form });
      body = await readJson(response);
      if (response.status === 503) checkReady();
      if (!body.faces) throw new Error(body.error || `HTTP ${response.status}`);
    } catch {
      state.textContent = "The detection service did not answer; trying again…";
      await sleep(1000);
      continue;
    }
    if (!webcam.running) break;
    const faces = steadyLabels(body.faces.map((face) => ({ ...face, box: face.box.map((v) => v / scale) })));
    drawWebcamFaces(faces, video.videoWidth, video.videoHeight);
    const now = performance.now();
    webcam.answered = [...webcam.answered.filter((t) => now - t < 5000), now];
    const span = (now - webcam.answered[0]) / 1000;
    const rate = span > 0 ? (webcam.answered.length - 1) / span : 0;
    state.dataset.fps = rate.toFixed(2);
    state.textContent = `Live: ${describeFaces(faces.length)} ${rate.toFixed(1)} frames/s analysed.`;
  }
}

async function toggleWebcam() {
  const button = document.getElementById("webcam-toggle");
  const panel = document.getElementById("webcam");
  const state = document.getElementById("webcam-state");
  if (webcam.running) {
    webcam.running = false;
    webcam.stream.getTracks().forEach((track) => track.stop());
    document.getElementById("webcam-video").srcObject = null;
    document.getElementById("webcam-marks").replaceChildren();
    panel.hidden = true;
    button.textContent = "Start the webcam";
    return;
  }
  panel.hidden = false;
  state.textContent = "Starting the camera…";
  try {
    webcam.stream = await navigator.mediaDevices.getUserMedia({ video: { width: { ideal: 1280 } }, audio: false });
  } catch (error) {
    state.textContent = `The camera cannot be used here (${error.name === "NotAllowedError"
      ? "permission refused" : "no camera found"}).`;
    return;
  }
  document.getElementById("webcam-video").srcObject = webcam.stream;
  webcam.running = true;
  webcam.faces = [];
  webcam.answered = [];
  button.textContent = "Stop the webcam";
  webcamLoop();
}

async function restore() {
  try {
    stored = JSON.parse(sessionStorage.getItem(STORAGE_KEY) || "[]");
  } catch {
    stored = [];
  }
  const kept = [];
  for (const entry of stored) {
    const section = newSection(entry.name);
    if (entry.kind === "photo") {
      renderPhoto(section, entry);
      kept.push(entry);
    } else if (await renderVideo(section, entry)) {
      kept.push(entry);
    } else {
      section.remove();
    }
  }
  stored = kept;
  saveResults();
  updateSummary();
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
  const slider = document.getElementById("min-confidence");
  slider.addEventListener("input", () => {
    minConfidence = Number(slider.value) / 100;
    document.getElementById("min-confidence-value").textContent = `${slider.value} %`;
    applyMinConfidence(document.getElementById("results"));
  });
  document.getElementById("clear-results").addEventListener("click", () => {
    stored = [];
    saveResults();
    document.getElementById("results").replaceChildren();
    updateSummary();
  });
  document.getElementById("download-all").addEventListener("click", downloadEverything);
  const webcamButton = document.getElementById("webcam-toggle");
  webcamButton.hidden = !navigator.mediaDevices?.getUserMedia;  // browsers give cameras to secure pages only
  webcamButton.addEventListener("click", toggleWebcam);
  setUpViewer();
  loadInfo();
  loadExamples();
  checkReady();
  setInterval(checkReady, READY_POLL_MS);
  restore();
});

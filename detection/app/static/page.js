// The upload page: photos go to POST /detect?annotated=1 (or POST /fetch-photo for a web address), videos to
// POST /videos (progress polled). Plain JavaScript, no build step and nothing fetched from outside this service. No
// inline script or style in the HTML (the service's Content-Security-Policy): styles computed here are set through
// element.style. zip.js and webcam.js hold the zip writer and the live webcam; another flow can plug in through
// window.facemaskPage (at the end of this file).
"use strict";

const VIDEO_SUFFIXES = [".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm", ".mpg", ".mpeg"];
const MAX_TABLE_ROWS = 200;
// A multipart upload carries the file plus its form envelope (boundaries, headers, the name): the service's limit
// counts the whole body, so the page keeps this much of it free rather than let a file pass here and fail there.
const FORM_ENVELOPE_BYTES = 1000;
const READY_POLL_MS = 5000;
const STORAGE_KEY = "facemask-results";
const CLASSIFIER_DOWN = "The classifier is not answering";
const CLASSES = ["with_mask", "incorrect", "without_mask", "unclassified"];
// The chips and badges of the page: the classes' colours of facemask/core/drawing.py, darkened so that white text on them
// reaches 4.5:1; any label the classifier adds later gets the amber that drawing.py gives unknown labels.
const LABEL_STYLE = {
  with_mask: ["Mask", "#0b7d1f"], mask: ["Mask", "#0b7d1f"],
  without_mask: ["No mask", "#c62828"], no_mask: ["No mask", "#c62828"],
  incorrect: ["Mask worn wrong", "#a44a06"], mask_weared_incorrect: ["Mask worn wrong", "#a44a06"],
  unclassified: ["Unclassified", "#5f6673"],
};
const SAME_CLASS = { mask: "with_mask", no_mask: "without_mask", mask_weared_incorrect: "incorrect" };

const page = {
  maxUploadBytes: null,
  keptHours: null,  // results have links, kept this long on the service; null: they live in this tab
  drawnLabels: {},  // facemask/drawing.py's tag texts and colours, from /info
  minConfidence: 0,
  hiddenLabels: new Set(),
  blurThumbnails: true,
};
// Every result shown, in the order chosen: what the summary counts and "Download everything" zips. Storage limits
// never remove one from here; a card says when its result cannot be kept across a reload.
const results = [];
let nextKey = Date.now();

function labelStyle(label) {
  if (LABEL_STYLE[label]) return LABEL_STYLE[label];
  const name = String(label).replace(/_/g, " ");
  return [name.charAt(0).toUpperCase() + name.slice(1), "#a44a06"];
}

const classOf = (label) => SAME_CLASS[label] || label;

function stem(filename) {
  const dot = filename.lastIndexOf(".");
  return (dot > 0 ? filename.slice(0, dot) : filename) || "upload";
}

function isVideo(file) {
  const name = file.name.toLowerCase();
  return file.type.startsWith("video/") || VIDEO_SUFFIXES.some((suffix) => name.endsWith(suffix));
}

const seconds = (value) => `${value.toFixed(1)} s`;
// Sizes in MB as the limits line states them, with enough digits that a file just over the limit does not read as
// equal to it.
function megabytes(count, other) {
  for (let digits = 1; digits < 7; digits += 1) {
    const text = (count / 1e6).toFixed(digits);
    if (other === undefined || text !== (other / 1e6).toFixed(digits)) {
      return `${Number(text).toLocaleString("en", { maximumFractionDigits: digits })} MB`;
    }
  }
  return `${(count / 1e6).toLocaleString("en")} MB`;
}

// The card's title is the file name, so a service message that starts with it loses that prefix; what is left
// becomes a sentence.
function sentence(message, name) {
  let text = String(message || "").trim();
  if (name && text.startsWith(`${name}: `)) text = text.slice(name.length + 2);
  if (!text) return "";
  text = text.charAt(0).toUpperCase() + text.slice(1);
  return /[.!?]$/.test(text) ? text : `${text}.`;
}

// What to do next, after what went wrong, by the service's answer.
function nextStep(status, fromUrl) {
  if (status === 400 && fromUrl) return "Check that the address opens the photo itself, not a web page about it.";
  if (status === 400) return "Choose a photo (JPEG, PNG, WebP…) or a short video and try again.";
  if (status === 429 || status === 503) return "Wait a moment, then press Retry.";
  return "Press Retry; if it fails again, reload the page.";
}

const UNREACHABLE = "The detection service cannot be reached. Check your connection, then press Retry.";

// One place for a card's error: its state line, announced once, and a Retry when trying again can help.
function showError(section, message, retry) {
  section.classList.add("failed");
  section.classList.remove("done");
  const state = section.querySelector(".result-state");
  state.textContent = message;
  state.classList.add("error");
  state.setAttribute("role", "alert");
  offerRetry(section, retry);
}

function offerRetry(section, retry) {
  const actions = section.querySelector(".result-actions");
  actions.hidden = !retry;
  const button = actions.querySelector(".retry");
  button.onclick = retry ? () => { actions.hidden = true; retry(); } : null;
}

function resetSection(section, stateText) {
  section.classList.remove("failed", "done", "photo", "video");
  const state = section.querySelector(".result-state");
  state.classList.remove("error");
  state.removeAttribute("role");
  state.textContent = stateText;
  for (const selector of [".result-media", ".counts", ".downloads", ".chart-wrap", "table.faces tbody"]) {
    section.querySelector(selector).replaceChildren();
  }
  section.querySelector("table.faces").hidden = true;
  section.querySelector(".result-actions").hidden = true;
}

// ---- Keeping results across a reload (sessionStorage, one key each) -------------------------------------------

function storedForm(entry) {
  // With the jobs store on, the service keeps the result: the link is enough to bring it back.
  if (entry.shareUrl) return { key: entry.key, kind: entry.kind, name: entry.name, shareUrl: entry.shareUrl };
  const { section, file, retry, kept, ...rest } = entry;
  return rest;
}

// The whole result if it fits, else without the uploaded photo (a filtered download then greys the hidden faces
// out of the service's drawing), else nothing: the card says so.
function persist(entry) {
  const key = `${STORAGE_KEY}:${entry.key}`;
  const full = storedForm(entry);
  const { original, ...smaller } = full;
  entry.kept = false;
  for (const form of original ? [full, smaller] : [full]) {
    try {
      sessionStorage.setItem(key, JSON.stringify(form));
      entry.kept = true;
      break;
    } catch {
      sessionStorage.removeItem(key);  // over the browser's quota
    }
  }
  saveIndex();
  noteKept(entry);
}

function saveIndex() {
  const keys = results.filter((entry) => entry.kept).map((entry) => entry.key);
  try {
    sessionStorage.setItem(STORAGE_KEY, JSON.stringify(keys));
  } catch {
    // the index is tiny; a browser that refuses even that keeps nothing, and each card says so
  }
}

function forget(entry) {
  sessionStorage.removeItem(`${STORAGE_KEY}:${entry.key}`);
}

function noteKept(entry) {
  const note = entry.section.querySelector(".result-note");
  note.replaceChildren();
  if (entry.shareUrl) {
    const link = document.createElement("a");
    link.className = "share-link";
    link.href = entry.shareUrl;
    link.textContent = "Link to this result";
    note.append(link, ` (anyone with it sees this card for ${page.keptHours ?? 24} hours)`);
  } else if (!entry.kept) {
    note.textContent = "Too large to keep across a reload of this page: download it now if you need it later.";
    note.classList.add("warning");
  }
  note.hidden = !note.childNodes.length;
}

function remember(entry) {
  const at = results.indexOf(entry);
  if (at < 0) results.push(entry);
  persist(entry);
  updateSummary();
}

// ---- Filters: minimum confidence and per-class toggles, applied to everything shown and downloaded --------------

// Compared at the precision shown (0.1 %): a face the table calls "100.0 %" stays at the top setting.
function shown(face) {
  if (page.hiddenLabels.has(classOf(face.label))) return false;
  return face.score == null || Math.round(face.score * 1000) / 10 >= Math.round(page.minConfidence * 1000) / 10;
}

const filtering = () => page.minConfidence > 0 || page.hiddenLabels.size > 0;

function countLabels(faces) {
  const counts = {};
  for (const face of faces) counts[face.label] = (counts[face.label] || 0) + 1;
  return counts;
}

// A photo's record as shown: the faces the filters hide left out, numbers kept (each face keeps its number).
function filteredRecord(record) {
  if (!filtering()) return record;
  const faces = record.faces.filter(shown);
  return { ...record, faces, counts: countLabels(faces),
    filter: { min_confidence: page.minConfidence, hidden_labels: [...page.hiddenLabels].sort(),
      faces_hidden: record.faces.length - faces.length } };
}

function applyFilters() {
  for (const entry of results) {
    if (entry.kind === "photo" && entry.section) applyFiltersTo(entry);
  }
  for (const row of document.querySelectorAll("section.result.video tbody tr")) {
    row.classList.toggle("filtered", page.hiddenLabels.has(classOf(row.dataset.label)));
  }
  updateSummary();
}

function applyFiltersTo(entry) {
  const { section, record } = entry;
  const hiddenNumbers = new Set(record.faces.map((face, index) => (shown(face) ? null : String(index + 1))));
  for (const element of section.querySelectorAll("tr[data-index], .mark[data-index]")) {
    element.classList.toggle("filtered", hiddenNumbers.has(element.dataset.index));
  }
  fillCounts(section, filteredRecord(record).counts);
  const caption = section.querySelector("table.faces caption");
  const hidden = record.faces.length - record.faces.filter(shown).length;
  caption.textContent = caption.dataset.base + (hidden ? ` (${hidden} of ${record.faces.length} hidden by the ` +
    "filters)" : "");
}

function buildLegend() {
  const legend = document.getElementById("legend");
  for (const label of CLASSES) {
    const [name, colour] = labelStyle(label);
    const item = document.createElement("label");
    item.className = "legend-item";
    const box = document.createElement("input");
    box.type = "checkbox";
    box.checked = true;
    box.dataset.label = label;
    box.addEventListener("change", () => {
      if (box.checked) page.hiddenLabels.delete(label); else page.hiddenLabels.add(label);
      applyFilters();
    });
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.setProperty("--chip", colour);
    swatch.setAttribute("aria-hidden", "true");
    item.append(box, swatch, name);
    legend.insertBefore(item, legend.querySelector(".legend-filter"));
  }
}

// ---- Cards --------------------------------------------------------------------------------------------------

function newSection(name, state = "Waiting…") {
  const section = document.getElementById("result-template").content.firstElementChild.cloneNode(true);
  section.querySelector(".result-title").textContent = name;
  section.querySelector(".result-state").textContent = state;
  setUpSorting(section.querySelector("table.faces"));  // listeners do not come with a cloned template
  document.getElementById("results").append(section);  // in the order chosen
  return section;
}

// On a phone the card may start below the screen: bring the first new one into view.
function bringIntoView(section) {
  const box = section.getBoundingClientRect();
  if (box.top < 0 || box.top > window.innerHeight - 80) section.scrollIntoView({ block: "start" });
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

// Column buttons sort the table (number, label, probability), again to reverse.
const SORT_KEYS = {
  index: (row) => Number(row.dataset.index),
  label: (row) => `${labelStyle(row.dataset.label)[0]}\u0000${String(row.dataset.index).padStart(6, "0")}`,
  score: (row) => Number(row.dataset.score),
};
function setUpSorting(table) {
  for (const header of table.querySelectorAll("th[data-sort]")) {
    header.querySelector("button").addEventListener("click", () => {
      const key = header.dataset.sort;
      const ascending = header.getAttribute("aria-sort") !== "ascending";
      for (const other of table.querySelectorAll("th[data-sort]")) other.removeAttribute("aria-sort");
      header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
      const body = table.querySelector("tbody");
      const value = SORT_KEYS[key];
      const rows = [...body.children].sort((a, b) => {
        const [x, y] = [value(a), value(b)];
        return (x < y ? -1 : x > y ? 1 : 0) * (ascending ? 1 : -1);
      });
      body.append(...rows);
    });
  }
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
}

function addDownload(section, href, filename, text, onClick) {
  const link = document.createElement("a");
  link.href = href;
  link.download = filename;
  link.textContent = text;
  if (onClick) link.addEventListener("click", onClick);
  section.querySelector(".downloads").append(link);
  return link;
}

function saveBlob(blob, filename) {
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = filename;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 60_000);
}

function describeFaces(count) {
  return count === 0 ? "No face found." : `${count} face${count === 1 ? "" : "s"} found.`;
}

function photoMessage(record, classified) {
  if (!classified) {
    return `${CLASSIFIER_DOWN}: the ${record.faces.length} face(s) found are listed as unclassified. ` +
      "Press Retry when it is back.";
  }
  return `${describeFaces(record.faces.length)} Detection ${record.timing_ms.detect} ms, classification ` +
    `${record.timing_ms.classify} ms.`;
}

function renderPhoto(section, entry) {
  const { record, picture, name, classified } = entry;
  entry.section = section;
  section.classList.add("photo");
  const marks = picture ? showPicture(section, name, picture, record.faces) : [];
  if (picture) {
    addDownload(section, picture, `${stem(name)}_annotated.jpg`, "Download annotated image", async (event) => {
      if (!filtering()) return;  // the service's drawing, as it is
      event.preventDefault();
      saveBlob(await annotatedBlob(entry), `${stem(name)}_annotated.jpg`);
    });
  }
  addDownload(section, "#", `${stem(name)}.json`, "Download JSON", (event) => {
    event.preventDefault();
    saveBlob(new Blob([JSON.stringify(filteredRecord(record), null, 2)], { type: "application/json" }),
      `${stem(name)}.json`);
  });
  fillFaceTable(section, record.faces, marks);
  applyFiltersTo(entry);
  if (classified) {
    section.querySelector(".result-state").textContent = photoMessage(record, true);
    offerRetry(section, null);
  } else {
    if (!entry.retry && entry.original) {  // after a reload: the photo kept with the result is sent again
      entry.retry = () => {
        resetSection(section, "Waiting…");
        processImage(new File([dataUrlBytes(entry.original)], name), section, entry);
      };
    }
    showError(section, photoMessage(record, false), entry.retry);
  }
  section.classList.add("done");
  section.classList.remove("failed");
}

// ---- Drawing a filtered photo: facemask/drawing.py's boxes and tags, for the faces the filters keep -----------

function tagSize(boxHeight, longSide) {  // drawing.tag_size
  const fontScale = Math.max(0.4, Math.min(longSide / 1600, Math.max(longSide / 3200, boxHeight / 40)));
  const thickness = Math.max(2, Math.round(Math.min(longSide / 400, Math.max(longSide / 1000, boxHeight / 20))));
  return [fontScale, thickness];
}

const rgb = (colour) => `rgb(${colour.join(",")})`;

async function decodeOriginal(entry) {
  const source = entry.file || (entry.original ? new Blob([dataUrlBytes(entry.original)]) : null);
  if (!source) return null;
  try {
    const bitmap = await createImageBitmap(source);
    return bitmap.width === entry.record.width && bitmap.height === entry.record.height ? bitmap : null;
  } catch {
    return null;  // a format the browser cannot decode (TIFF): the service's drawing of every face is used
  }
}

// The photo with the boxes and tags of the faces the filters keep. Without the uploaded photo (not kept across the
// reload, or a format the browser cannot read) the service's drawing is used, the hidden faces greyed out as on
// the page.
async function annotatedBlob(entry) {
  const { record } = entry;
  const bitmap = await decodeOriginal(entry);
  const canvas = document.createElement("canvas");
  const context = canvas.getContext("2d");
  const base = bitmap || await createImageBitmap(new Blob([dataUrlBytes(entry.picture)], { type: "image/jpeg" }));
  [canvas.width, canvas.height] = [base.width, base.height];
  context.drawImage(base, 0, 0);
  const longSide = Math.max(canvas.width, canvas.height);
  if (!bitmap) {
    context.fillStyle = "rgba(60, 66, 80, 0.9)";
    for (const face of record.faces.filter((f) => !shown(f))) {
      const [x1, y1, x2, y2] = face.box.map(Math.round);
      const [fontScale, thickness] = tagSize(y2 - y1, longSide);
      const tag = Math.round(fontScale * 30) + 4 * thickness;  // the tag above (or below) the box
      context.fillRect(x1 - thickness, y1 - tag, Math.max(x2 - x1, 14 * tag) + 2 * thickness, y2 - y1 + 2 * tag);
    }
    return new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.92));
  }
  for (const face of [...record.faces.filter(shown)].sort((a, b) => a.box[1] - b.box[1])) {
    const [x1, y1, x2, y2] = face.box.map(Math.round);
    const [fontScale, thickness] = tagSize(y2 - y1, longSide);
    const style = page.drawnLabels[classOf(face.label)] || page.drawnLabels.incorrect ||
      { text: labelStyle(face.label)[0], colour: [255, 176, 0], text_colour: [0, 0, 0] };
    const text = face.score == null ? style.text : `${style.text} ${Math.round(face.score * 100)}%`;
    context.strokeStyle = rgb(style.colour);
    context.lineWidth = thickness;
    context.strokeRect(x1, y1, x2 - x1, y2 - y1);
    context.font = `bold ${Math.round(fontScale * 30)}px sans-serif`;
    const textHeight = Math.round(fontScale * 22);
    const pad = Math.max(2, thickness);
    const tagWidth = context.measureText(text).width + 2 * pad;
    const tagHeight = textHeight + 2 * pad + Math.round(fontScale * 8);
    const top = y1 - tagHeight >= 0 ? y1 - tagHeight : Math.min(y2, canvas.height - tagHeight);
    const left = Math.min(Math.max(0, x1), Math.max(0, canvas.width - tagWidth));
    context.fillStyle = rgb(style.colour);
    context.fillRect(left, top, tagWidth, tagHeight);
    context.fillStyle = rgb(style.text_colour);
    context.textBaseline = "top";
    context.fillText(text, left + pad, top + pad);
  }
  return new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.92));
}

// ---- Sending ------------------------------------------------------------------------------------------------

function uploadWithProgress(url, body, onProgress, contentType) {
  return new Promise((resolve, reject) => {
    const request = new XMLHttpRequest();
    request.open("POST", url);
    if (contentType) request.setRequestHeader("Content-Type", contentType);
    request.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) onProgress(event.loaded / event.total);
    });
    request.addEventListener("load", () => {
      let answer;
      try {
        answer = JSON.parse(request.responseText);
      } catch {
        answer = { error: `the service answered HTTP ${request.status} without a readable message` };
      }
      resolve({ status: request.status, body: answer });
    });
    request.addEventListener("error", () => reject(new Error(UNREACHABLE)));
    request.send(body);
  });
}

// Two phases: a bar that fills while the bytes go up, then a moving (indeterminate) bar while the service works.
async function send(section, url, body, afterUpload, contentType) {
  const state = section.querySelector(".result-state");
  const progress = section.querySelector(".result-progress");
  progress.hidden = false;
  progress.value = 0;
  const working = () => {
    progress.removeAttribute("value");
    state.textContent = afterUpload;
  };
  try {
    return await uploadWithProgress(url, body, (fraction) => {
      if (fraction < 1) {
        progress.value = Math.round(fraction * 100);
        state.textContent = `Uploading: ${progress.value} %`;
      } else {
        working();
      }
    }, contentType);
  } catch (error) {
    return { status: 0, body: { error: error.message } };
  } finally {
    progress.hidden = true;
  }
}

// Retrying helps when the service was out of reach or busy, not when it refused the file itself.
const worthRetrying = (status) => status === 0 || status === 429 || status >= 500;

function refusal(upload, name, fromUrl) {
  if (upload.status === 0) return UNREACHABLE;
  if (upload.status === 503) return `${CLASSIFIER_DOWN}. Press Retry when it is back.`;
  if (upload.status === 413) {
    return `Too large: the service takes up to ${megabytes(page.maxUploadBytes || 0)} per file. Make the file ` +
      "smaller and try again.";
  }
  const what = sentence(upload.body.error, name) || `The service answered HTTP ${upload.status}.`;
  // A message that already says what to do (a second sentence) is left as it is.
  return /[.!?] \S/.test(what) ? what : `${what} ${nextStep(upload.status, fromUrl)}`;
}

function photoEntry(upload, name, extra) {
  const { annotated_image: picture, error, share_url: shareUrl, ...record } = upload.body;
  return { kind: "photo", key: nextKey++, name, record, picture, classified: upload.status === 200, shareUrl,
    ...extra };
}

// A photo's answer goes into its card, in place of what the card showed before (a retry).
function settlePhoto(section, upload, name, previous, extra, retry) {
  if (upload.status !== 200 && !(upload.status === 503 && upload.body.faces)) {
    showError(section, refusal(upload, name, Boolean(extra.url)), worthRetrying(upload.status) ? retry : null);
    if (upload.status === 503 || upload.status === 0) checkReady();
    return;
  }
  const entry = photoEntry(upload, name, extra);
  entry.retry = retry;
  if (!entry.classified) checkReady();
  resetSection(section, "");
  renderPhoto(section, entry);
  if (previous) {
    forget(previous);
    results[results.indexOf(previous)] = entry;
  } else {
    results.push(entry);
  }
  remember(entry);
  return entry;
}

async function processImage(file, section, previous) {
  const form = new FormData();
  form.append("image", file, file.name);
  const upload = await send(section, "/detect?annotated=1", form, "Analysing…");
  let entry = null;
  const retry = () => { resetSection(section, "Waiting…"); processImage(file, section, entry || previous); };
  entry = settlePhoto(section, upload, file.name, previous, { file, original: await readDataUrl(file) }, retry);
}

function readDataUrl(blob) {
  return new Promise((resolve) => {
    const reader = new FileReader();
    reader.addEventListener("load", () => resolve(reader.result));
    reader.addEventListener("error", () => resolve(null));
    reader.readAsDataURL(blob);
  });
}

async function processUrl(url, section, previous) {
  const upload = await send(section, "/fetch-photo", JSON.stringify({ url }), "Fetching and analysing…",
    "application/json");
  let entry = null;
  const retry = () => { resetSection(section, "Waiting…"); processUrl(url, section, entry || previous); };
  const name = upload.body.filename || section.querySelector(".result-title").textContent;
  section.querySelector(".result-title").textContent = name;
  entry = settlePhoto(section, upload, name, previous, { url }, retry);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// ---- Videos -------------------------------------------------------------------------------------------------

function thumbnailUrl(status, trackId) {
  return `/videos/${status.id}/people/${trackId}?privacy=${page.blurThumbnails ? "blur" : "none"}`;
}

// The people of a video: tracks seen long enough to count, with when they were on screen and a face thumbnail.
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
    const person = document.createElement("td");
    const thumbnail = document.createElement("img");
    thumbnail.className = "thumbnail";
    thumbnail.alt = "";  // the cell says who it is
    thumbnail.dataset.track = String(track.track_id);
    thumbnail.src = thumbnailUrl(status, track.track_id);
    person.append(thumbnail, `#${track.track_id}`);
    row.append(person, labelCell(track.label));
    textCells(row, [seconds(track.first_time_s), seconds(track.last_time_s), seconds(track.seconds_on_screen)]);
    const seek = () => {
      video.currentTime = track.first_time_s;
      video.focus();
    };
    row.addEventListener("click", seek);
    row.addEventListener("keydown", (event) => {
      if (event.key === "Enter") seek();
    });
    row.classList.toggle("filtered", page.hiddenLabels.has(classOf(track.label)));
    body.append(row);
  }
  table.querySelector("caption").textContent = `People: ${tracks.length} (click one to see them in the video)`;
  table.hidden = tracks.length === 0;
  section.querySelector(".chart-wrap").replaceChildren(peopleChart(record, tracks, video));
}

const SVG = "http://www.w3.org/2000/svg";
function svgElement(name, attributes, text) {
  const element = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, String(value));
  if (text !== undefined) element.textContent = text;
  return element;
}

// People on screen per label over the video's time, one line each, drawn here as inline SVG, with a playhead that
// follows the video; clicking the chart seeks the video there.
function peopleChart(record, tracks, video) {
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
  const x = (t) => left + ((width - left - 6) * Math.min(t, end)) / end;
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
  const playhead = svgElement("line", { x1: x(0), y1: 4, x2: x(0), y2: y(0), class: "playhead" });
  svg.append(playhead);
  if (video) {
    const follow = () => {
      const at = x(video.currentTime || 0).toFixed(1);
      playhead.setAttribute("x1", at);
      playhead.setAttribute("x2", at);
      playhead.dataset.time = String(video.currentTime || 0);
    };
    for (const name of ["timeupdate", "seeked", "seeking", "loadedmetadata"]) video.addEventListener(name, follow);
    const frame = () => { follow(); if (!video.paused) requestAnimationFrame(frame); };
    video.addEventListener("play", () => requestAnimationFrame(frame));
    svg.addEventListener("click", (event) => {
      const box = svg.getBoundingClientRect();
      const at = ((event.clientX - box.left) / box.width) * width;
      video.currentTime = Math.max(0, Math.min(end, ((at - left) / (width - left - 6)) * end));
    });
  }
  const figure = document.createElement("figure");
  figure.className = "chart-figure";
  const caption = document.createElement("figcaption");
  caption.append("People on screen over time (the line marks the video's position; click to jump):");
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
  entry.section = section;
  section.classList.add("video");
  let record;
  try {
    const response = await fetch(status.json_url);
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    record = await response.json();
  } catch {
    showError(section, "This video's result is no longer on the service (results are kept for an hour). Upload " +
      "the video again to see it.");
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
      "unclassified. Press Retry when it is back.", entry.retry);
  }
  section.classList.add("done");
  section.classList.remove("failed");
  return true;
}

async function processVideo(file, section, previous) {
  const form = new FormData();
  form.append("video", file, file.name);
  const upload = await send(section, "/videos", form, "Starting…");
  const retry = () => { resetSection(section, "Waiting…"); processVideo(file, section, previous); };
  if (upload.status !== 202) {
    showError(section, refusal(upload, file.name), worthRetrying(upload.status) ? retry : null);
    if (upload.status === 503 || upload.status === 0) checkReady();
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
    } catch {
      status = { state: "failed", error: UNREACHABLE };
    }
  }
  progress.hidden = true;
  if (status.state !== "done") {
    showError(section, sentence(status.error, file.name) || "The video could not be annotated.", retry);
    return;
  }
  const entry = { kind: "video", key: nextKey++, name: file.name, status, retry };
  if (await renderVideo(section, entry)) {
    if (previous) {
      forget(previous);
      results[results.indexOf(previous)] = entry;
    }
    if (page.keptHours !== null) entry.shareUrl = await shareVideo(status.id);
    remember(entry);
  }
}

async function shareVideo(jobId) {
  try {
    const response = await fetch("/results", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ video_job: jobId }) });
    return response.ok ? (await response.json()).share_url : undefined;
  } catch {
    return undefined;
  }
}

async function readJson(response) {
  try {
    return await response.json();
  } catch {
    return { error: `the service answered HTTP ${response.status} without a readable message` };
  }
}

// Every file gets its card at once, "Queued", in the order chosen; then one at a time.
async function handleFiles(fileList) {
  // With the queue on, batches.js sends many photos as one batch job; the rest are shown here one by one.
  const files = window.facemaskBatches ? await window.facemaskBatches.take(Array.from(fileList)) : Array.from(fileList);
  const sections = files.map((file) => newSection(file.name, "Queued"));
  if (sections.length) bringIntoView(sections[0]);
  for (const [index, file] of files.entries()) {
    const section = sections[index];
    section.querySelector(".result-state").textContent = "Waiting…";
    if (page.maxUploadBytes && file.size + FORM_ENVELOPE_BYTES > page.maxUploadBytes) {
      showError(section, `Too large: this file is ${megabytes(file.size, page.maxUploadBytes)}, and the service ` +
        `takes up to ${megabytes(page.maxUploadBytes)} per file (a little of which the upload itself uses). Make it ` +
        "smaller (a lower resolution or stronger compression) and try again.");
      continue;
    }
    if (file.size === 0) {
      showError(section, "The file is empty. Choose another one.");
      continue;
    }
    await (isVideo(file) ? processVideo(file, section) : processImage(file, section));
    if (index === 0) bringIntoView(section);  // the summary above it may have pushed it down meanwhile
  }
}

async function handleUrl(url) {
  const section = newSection(url, "Waiting…");
  bringIntoView(section);
  await processUrl(url, section);
  bringIntoView(section);
}

// A summary across every result shown: photos, faces per label (as filtered), videos and their people.
function updateSummary() {
  const photos = results.filter((entry) => entry.kind === "photo");
  const videos = results.filter((entry) => entry.kind === "video");
  const box = document.getElementById("batch-summary");
  box.hidden = results.length === 0;
  if (box.hidden) return;
  const counts = {};
  let faces = 0;
  let hidden = 0;
  for (const entry of photos) {
    for (const face of entry.record.faces) {
      if (!shown(face)) {
        hidden += 1;
        continue;
      }
      counts[face.label] = (counts[face.label] || 0) + 1;
      faces += 1;
    }
  }
  const parts = Object.entries(counts).sort((a, b) => b[1] - a[1])
    .map(([label, count]) => `${labelStyle(label)[0]}: ${count}`);
  const sentences = [];
  if (photos.length) {
    sentences.push(`${photos.length === 1 ? "1 photo" : `All ${photos.length} photos`}: ${faces} ` +
      `face${faces === 1 ? "" : "s"}` + (parts.length ? ` (${parts.join(", ")})` : "") + "." +
      (hidden ? ` ${hidden} more hidden by the filters.` : ""));
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

// One zip of everything shown, as filtered: annotated files and JSON records, faces.csv for the photos, people.csv
// for the videos.
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
  for (const entry of results) {
    const base = stem(entry.name);
    if (entry.kind === "photo") {
      if (entry.picture) {
        const picture = filtering() ? new Uint8Array(await (await annotatedBlob(entry)).arrayBuffer())
          : dataUrlBytes(entry.picture);
        files.push([unique(`${base}_annotated.jpg`), picture]);
      }
      files.push([unique(`${base}.json`), text(JSON.stringify(filteredRecord(entry.record), null, 2))]);
      entry.record.faces.forEach((face, index) => {
        if (shown(face)) {
          faces.push(csvLine([entry.name, index + 1, face.label, face.score, ...face.box.map((v) => Math.round(v)),
            face.det_score, face.status]));
        }
      });
    } else {
      for (const [url, suffix] of [[entry.status.video_url, "webm"], [entry.status.json_url, "json"]]) {
        const response = await fetch(url);
        if (!response.ok) continue;  // expired on the service: the rest still goes into the zip
        files.push([unique(`${base}_annotated.${suffix}`), new Uint8Array(await response.arrayBuffer())]);
        if (suffix === "json") {
          const record = JSON.parse(new TextDecoder().decode(files[files.length - 1][1]));
          for (const track of ((record.summary || {}).tracks || []).filter((t) => t.counted)) {
            if (page.hiddenLabels.has(classOf(track.label))) continue;
            people.push(csvLine([entry.name, track.track_id, track.label, track.first_time_s, track.last_time_s,
              track.seconds_on_screen]));
          }
        }
      }
    }
  }
  files.push(["faces.csv", text(faces.join("\r\n") + "\r\n")]);
  if (people.length > 1) files.push(["people.csv", text(people.join("\r\n") + "\r\n")]);
  saveBlob(zipStored(files), "facemask-results.zip");
}

// ---- The service's state and limits, the examples -------------------------------------------------------------

let readyText = null;
// Rewritten only when it changes: a screen reader announces the status line each time it is written.
async function checkReady() {
  const line = document.getElementById("service-status");
  let state;
  try {
    const ready = await fetch("/ready");
    state = ready.ok ? ["ready", "Ready: each face is marked mask, no mask or mask worn wrong, with its probability."]
      : ["down", `${CLASSIFIER_DOWN}: faces will be found but not classified until it is back.`];
  } catch {
    state = ["down", "The detection service cannot be reached. Check your connection; this line updates by itself."];
  }
  const text = state.join("|");
  if (text === readyText) return;
  readyText = text;
  line.classList.toggle("down", state[0] === "down");
  line.classList.toggle("ready", state[0] === "ready");
  line.textContent = state[1];
}

async function loadInfo() {
  try {
    const info = await (await fetch("/info")).json();
    page.maxUploadBytes = info.max_upload_bytes;
    page.drawnLabels = info.drawn_labels || {};
    page.keptHours = info.results_kept_h ?? null;
    const minutes = info.max_video_frames / 30 / 60;
    document.getElementById("limits").textContent = `Up to ${megabytes(page.maxUploadBytes)} per file; videos up ` +
      `to ${info.max_video_frames.toLocaleString("en")} frames ` +
      `(${minutes >= 1 ? `${minutes.toFixed(minutes % 1 ? 1 : 0)} min` : `${Math.round(minutes * 60)} s`} at 30 ` +
      "frames/s).";
    document.getElementById("keep-note").textContent = page.keptHours === null
      ? "Results live in this browser tab only: download what you want to keep."
      : `Each result has a link that works for ${page.keptHours.toLocaleString("en")} hours.`;
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
    const video = sample.kind === "video";
    button.setAttribute("aria-label", `Try the example ${video ? "video" : "photo"} ${sample.name}`);
    const thumbnail = document.createElement(video ? "video" : "img");
    thumbnail.src = sample.url;
    if (video) {
      thumbnail.muted = true;
      thumbnail.preload = "auto";
      thumbnail.setAttribute("aria-hidden", "true");
    } else {
      thumbnail.alt = "";
    }
    button.append(thumbnail, sample.name.replace(/\.(jpg|webm)$/, "").replace(/_/g, " ") + (video ? " (video)" : ""));
    button.addEventListener("click", async () => {
      const blob = await (await fetch(sample.url)).blob();
      handleFiles([new File([blob], sample.name, { type: blob.type || (video ? "video/webm" : "image/jpeg") })]);
    });
    list.append(button);
  }
  document.getElementById("examples").hidden = samples.length === 0;
}

// ---- Full size with zoom (buttons, wheel, pinch on touch screens) and pan (drag, scroll bars, arrow keys) ------

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
  setZoom("fit");  // the whole photo first, on a phone too
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
  // A mouse drags the picture; touch pans and pinches natively (touch-action in page.css).
  let drag = null;
  pane.addEventListener("pointerdown", (event) => {
    if (event.pointerType !== "mouse") return;
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

// ---- Reload, links ----------------------------------------------------------------------------------------------

async function fromLink(shareUrl) {
  const response = await fetch(`/results/${shareUrl.split("/").pop()}`);
  const shared = await readJson(response);
  if (!response.ok) return { error: sentence(shared.error) || "This link does not work any more." };
  if (shared.kind === "photo") {
    const { annotated_image: picture, share_url: ignored, ...record } = shared.answer;
    return { kind: "photo", name: shared.name, record: { ...record, filename: shared.name }, picture,
      original: shared.original, classified: shared.classified, shareUrl };
  }
  return { kind: "video", name: shared.name, status: shared.status, shareUrl };
}

async function showEntry(entry, section) {
  if (entry.kind === "photo") {
    renderPhoto(section, entry);
    return true;
  }
  return renderVideo(section, entry);
}

async function restore() {
  let keys = [];
  try {
    keys = JSON.parse(sessionStorage.getItem(STORAGE_KEY) || "[]");
  } catch {
    keys = [];
  }
  for (const key of keys) {
    let entry;
    try {
      entry = JSON.parse(sessionStorage.getItem(`${STORAGE_KEY}:${key}`));
    } catch {
      entry = null;
    }
    if (!entry) continue;
    const section = newSection(entry.name);
    if (entry.shareUrl && !entry.record && !entry.status) {
      const loaded = await fromLink(entry.shareUrl);
      if (loaded.error) {
        showError(section, loaded.error);
        continue;
      }
      entry = { ...loaded, key: entry.key };
    }
    if (await showEntry(entry, section)) {
      results.push(entry);
      entry.kept = true;
      noteKept(entry);
    } else {
      section.remove();
      forget(entry);
    }
  }
  saveIndex();
  const link = window.location.pathname.match(/^\/r\/([A-Za-z0-9_-]+)$/);
  if (link) {
    const section = newSection("Shared result", "Loading…");
    const loaded = await fromLink(window.location.pathname);
    if (loaded.error) {
      showError(section, loaded.error);
    } else {
      section.querySelector(".result-title").textContent = loaded.name;
      const entry = { ...loaded, key: nextKey++ };
      if (await showEntry(entry, section)) remember(entry);
    }
  }
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
  // Paste anywhere on the page (a screenshot, a copied photo); text pasted into a field stays text.
  document.addEventListener("paste", (event) => {
    const files = [...(event.clipboardData?.files || [])];
    if (!files.length) return;
    event.preventDefault();
    handleFiles(files.map((file, index) => (file.name && file.name !== "image.png" ? file
      : new File([file], `pasted-${new Date().toISOString().slice(11, 19).replace(/:/g, "")}-${index + 1}.` +
        `${(file.type.split("/")[1] || "png").replace("jpeg", "jpg")}`, { type: file.type }))));
  });
  document.getElementById("url-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const field = document.getElementById("url-input");
    const url = field.value.trim();
    if (url) handleUrl(url);
    field.value = "";
  });
  const slider = document.getElementById("min-confidence");
  slider.addEventListener("input", () => {
    page.minConfidence = Number(slider.value) / 100;
    for (const id of ["min-confidence-value", "legend-confidence"]) {
      document.getElementById(id).textContent = `${slider.value} %`;
    }
    applyFilters();
  });
  const privacy = document.getElementById("privacy-blur");
  privacy.addEventListener("change", () => {
    page.blurThumbnails = privacy.checked;
    for (const entry of results.filter((e) => e.kind === "video")) {
      for (const image of entry.section.querySelectorAll("img.thumbnail")) {
        image.src = thumbnailUrl(entry.status, image.dataset.track);
      }
    }
  });
  document.getElementById("clear-results").addEventListener("click", () => {
    for (const entry of results) forget(entry);
    results.length = 0;
    saveIndex();
    document.getElementById("results").replaceChildren();
    updateSummary();
  });
  document.getElementById("download-all").addEventListener("click", downloadEverything);
  const webcamButton = document.getElementById("webcam-toggle");
  webcamButton.hidden = !navigator.mediaDevices?.getUserMedia;  // browsers give cameras to secure pages only
  webcamButton.addEventListener("click", toggleWebcam);
  buildLegend();
  setUpViewer();
  loadInfo().then(restore);
  loadExamples();
  checkReady();
  setInterval(checkReady, READY_POLL_MS);
});

// For another flow on this page (a separate script): make cards, send files through the same paths, add results
// to the summary and the zip.
window.facemaskPage = { handleFiles, newSection, showError, renderPhoto, renderVideo, remember, results,
  updateSummary, filteredRecord, megabytes };

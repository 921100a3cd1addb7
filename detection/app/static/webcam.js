// The webcam, live (page.js starts it from its toolbar button); loaded before page.js, uses its helpers at run time.
"use strict";


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


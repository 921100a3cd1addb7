"""Detection -> crop -> classification over HTTP, for one image or video frame at a time.

Used by the detection service and by infer.py, so both give the same answer for the same image.
"""
from __future__ import annotations

import io
import itertools
import logging
import time
from dataclasses import dataclass

import numpy as np
import requests

from facemask.core.boxes import reading_order
from facemask.core.crops import LEGACY_FACE_FRACTION, SERVED, CropGeometry, crop_face
from facemask.core.detector import create_detector
from facemask.core.errors import FacemaskError, OptionError
from facemask.core.images import encode_png
from facemask.core.protocols import Classifier, Detector
from facemask.core.results import (
    Face,
    Faces,
    FrameResult,
    NotClassified,
    Prediction,
    prediction_from_json,
)
from facemask.core.settings import Settings

DEFAULT_CLASSIFIER_URL = Settings.classifier_url
CROPS_PER_REQUEST = 128  # the classification service accepts up to 256 (MAX_CROPS_PER_REQUEST)
NPY_MEDIA_TYPE = "application/x-npy"
DEFAULT_CLASSIFY_DEADLINE_S = Settings.classify_deadline_s
# Once the classifier has failed a whole deadline, requests fail at once for this long, and then only after a quick
# /ready probe fails too (8 clients against a hung classifier each waited out a full deadline in turn).
CIRCUIT_COOLDOWN_S = 5.0
LOG = logging.getLogger(__name__)


class ClassifierUnavailable(FacemaskError, RuntimeError):
    """The classification service could not be reached or kept failing after retries."""


class ClassifierClient:
    """POST /classify with every crop of a frame in one request; retries with exponential backoff.

    Several replicas share the work either way (README, "Many cameras"):
    - `url` (Settings.classifier_url) may list base URLs separated by commas: requests take turns over them, and a retry
      goes to the next one, so a replica that is down costs one attempt, not the frame;
    - one URL is taken to be a balancer (a Kubernetes Service, a compose service name): each request then opens its
      own connection, because a kept-alive connection would pin this worker to the one replica it first reached
      (kube-proxy and Docker's DNS choose a replica per connection, not per request).
    `keep_alive` overrides that choice (bench/scale_out.py measures what a fresh connection costs).

    transport: "npy" sends a batch as one uint8 array (no PNG encoding), "multipart" as PNG files, "auto" uses
    the array form when the service lists it in /info (older services only take multipart).
    """

    def __init__(self, url: str | None = None, timeout: float = 30.0, retries: int = 3, backoff: float = 0.5,
                 keep_alive: bool | None = None, transport: str = "auto", deadline: float | None = None):
        if transport not in ("auto", "npy", "multipart"):
            raise OptionError(f"transport must be auto, npy or multipart, got {transport!r}")
        configured = url or DEFAULT_CLASSIFIER_URL
        self.urls = [part.strip().rstrip("/") for part in configured.split(",") if part.strip()]
        self.url = ",".join(self.urls)
        self.timeout, self.retries, self.backoff, self.transport = timeout, retries, backoff, transport
        # One budget for all tries and chunks of a classify() call, well inside gunicorn's 60 s worker timeout:
        # 4 tries x 30 s against a hung classifier otherwise outlived the worker (an HTML 500 after 61 s).
        self.deadline = deadline or DEFAULT_CLASSIFY_DEADLINE_S
        self.session = requests.Session()
        self._turn = itertools.count()
        keep_alive = len(self.urls) > 1 if keep_alive is None else keep_alive
        self._headers = {} if keep_alive else {"Connection": "close"}
        self._service_info: dict | None = None
        self._down_since: float | None = None  # the circuit breaker: when the classifier was last found down
        self._down_reason, self._probe_at = "", 0.0

    @classmethod
    def from_settings(cls, settings: Settings, **options) -> "ClassifierClient":
        """The client of CLASSIFIER_URL with the CLASSIFY_DEADLINE_S budget; options as for the constructor."""
        return cls(settings.classifier_url, deadline=settings.classify_deadline_s, **options)

    def _check_circuit(self) -> None:
        """Raises ClassifierUnavailable at once while the classifier is known to be down; past the cool-down a
        /ready probe (2 s at most) decides whether requests go to it again."""
        if self._down_since is None:
            return
        now = time.monotonic()
        if now >= self._probe_at:
            if self.is_ready():
                self._down_since = None
                return
            self._probe_at = time.monotonic() + CIRCUIT_COOLDOWN_S
        raise ClassifierUnavailable(f"classifier not answering since {now - self._down_since:.0f} s "
                                    f"({self._down_reason}); it is tried again every {CIRCUIT_COOLDOWN_S:.0f} s")

    def _request(self, method: str, path: str, deadline_at: float | None = None, **kwargs) -> requests.Response:
        self._check_circuit()
        last_error, tries = "no attempt made", 0
        headers = {**self._headers, **kwargs.pop("headers", {})}
        for attempt in range(self.retries + 1):
            if attempt:
                pause = self.backoff * 2 ** (attempt - 1)
                if deadline_at is not None and time.monotonic() + pause >= deadline_at:
                    break
                time.sleep(pause)
            read_timeout = self.timeout
            if deadline_at is not None:
                read_timeout = min(read_timeout, deadline_at - time.monotonic())
                if read_timeout <= 0:
                    break
            base = self.urls[next(self._turn) % len(self.urls)]
            tries += 1
            try:
                response = self.session.request(method, base + path, timeout=(min(3.0, read_timeout), read_timeout),
                                                headers=headers, **kwargs)
            except requests.RequestException as error:
                # The full error (with the classifier's internal address) goes to the log; answers name its kind.
                LOG.info("classifier %s %s, attempt %d failed: %s", method, base + path, tries, error)
                last_error = type(error).__name__
                continue
            if response.status_code < 500:
                self._down_since = None
                return response
            LOG.info("classifier %s %s, attempt %d answered HTTP %s: %s", method, base + path, tries,
                     response.status_code, response.text[:200])
            last_error = f"HTTP {response.status_code}"
        within = f" within the {self.deadline:.0f} s deadline" if deadline_at is not None else ""
        reason = f"failed after {tries} attempt(s){within}: {last_error}"
        LOG.warning("classifier at %s unavailable after %d attempt(s)%s: %s", self.url, tries, within, last_error)
        if self._down_since is None:
            self._down_since = time.monotonic()
        self._down_reason, self._probe_at = reason, time.monotonic() + CIRCUIT_COOLDOWN_S
        raise ClassifierUnavailable(f"classifier {reason}")

    def classify(self, crops: list[np.ndarray]) -> list[Prediction]:
        """One prediction per crop, in order. A crowd is sent in chunks that stay under the service's per-request
        limit."""
        results: list[Prediction] = []
        deadline_at = time.monotonic() + self.deadline
        as_array = bool(crops) and self._sends_arrays(deadline_at)
        if as_array and len({crop.shape for crop in crops}) > 1:
            LOG.debug("crops of %d sizes cannot share one array: sent as PNG files", len({c.shape for c in crops}))
            as_array = False
        for start in range(0, len(crops), CROPS_PER_REQUEST):
            chunk = crops[start:start + CROPS_PER_REQUEST]
            if as_array:
                buffer = io.BytesIO()
                np.save(buffer, np.stack(chunk).astype(np.uint8, copy=False))
                response = self._request("POST", "/classify", deadline_at=deadline_at, data=buffer.getvalue(),
                                         headers={"Content-Type": NPY_MEDIA_TYPE})
            else:
                files = [("crops", (f"face_{start + i}.png", encode_png(crop), "image/png"))
                         for i, crop in enumerate(chunk)]
                response = self._request("POST", "/classify", deadline_at=deadline_at, files=files)
            if response.status_code != 200:
                LOG.warning("classifier rejected the crops: HTTP %s %s", response.status_code, response.text[:200])
                raise ClassifierUnavailable(f"classifier rejected the crops: HTTP {response.status_code}")
            results += [prediction_from_json(result) for result in response.json()["results"]]
        return results

    def _cached_info(self, deadline_at: float | None = None) -> dict:
        """/info, asked once per client ({} from a service without it); an unreachable service raises
        ClassifierUnavailable here, once, as classify() would."""
        if self._service_info is None:
            try:
                response = self._request("GET", "/info", deadline_at=deadline_at)
                response.raise_for_status()
                self._service_info = response.json()
            except requests.HTTPError:
                self._service_info = {}
        return self._service_info

    def _sends_arrays(self, deadline_at: float | None = None) -> bool:
        if self.transport == "auto":
            formats = self._cached_info(deadline_at).get("crop_formats", [])
            self.transport = "npy" if NPY_MEDIA_TYPE in formats else "multipart"
        return self.transport == "npy"

    def crop_geometry(self) -> CropGeometry:
        """The crop the served model was trained on, from /info: the model owns its input, so the detection side
        cuts what the classifier expects, an older model included (services that do not list a face fraction
        serve models trained at the legacy one)."""
        info = self._cached_info(time.monotonic() + self.deadline)
        size = info.get("input_size", [CropGeometry().size])[0]
        return CropGeometry(int(size), float(info.get("face_fraction", LEGACY_FACE_FRACTION)))

    def info(self) -> dict:
        response = self._request("GET", "/info")
        response.raise_for_status()
        return response.json()

    def is_ready(self) -> bool:
        """True when at least one replica is ready: requests to the others are retried on the next."""
        for base in self.urls:
            try:
                if self.session.get(base + "/ready", timeout=2.0, headers=self._headers).status_code == 200:
                    return True
            except requests.RequestException:
                continue
        return False


@dataclass
class Classified:
    """One prediction per crop, in order, and why the classifier gave none (None when it answered)."""

    predictions: list[Prediction]
    error: str | None = None


class FaceClassifier:
    """The crop -> classify step of both photos and video frames, with one policy for a classifier that cannot be
    reached.

    - Crops are cut at the geometry the served model was trained on (its /info), asked once and then cached by the
      client. A crop cut at a guessed geometry is never classified.
    - Each request gets the client's retries within one deadline; a classifier found down then fails at once for
      CIRCUIT_COOLDOWN_S, after which one quick /ready probe decides whether it is asked again (every attempt and
      the giving up are logged by the client, on the `facemask.core.pipeline` logger).
    - Faces it gives no answer for are kept, NotClassified with the reason: nothing is dropped or raised.
    """

    def __init__(self, client: Classifier):
        self.client = client

    def geometry(self) -> tuple[CropGeometry, str | None]:
        """The served model's crop geometry and None; while the classifier cannot be reached, the shipped model's
        (SERVED) and why: crops cut then serve the caller's own comparisons, classify() does not send them."""
        try:
            return self.client.crop_geometry(), None
        except ClassifierUnavailable as failure:
            return SERVED, str(failure)

    def classify(self, crops: list[np.ndarray], unavailable: str | None = None) -> Classified:
        """The crops' predictions; `unavailable` (from geometry()) answers them all with that reason, unsent."""
        if unavailable is None and crops:
            try:
                return Classified(self.client.classify(crops))
            except ClassifierUnavailable as failure:
                unavailable = str(failure)
        if unavailable is None:
            return Classified([])
        return Classified([NotClassified(unavailable)] * len(crops), unavailable)

    def classify_faces(self, image_rgb: np.ndarray, faces: list[Face]) -> Classified:
        geometry, unavailable = self.geometry() if faces else (SERVED, None)
        return self.classify([crop_face(image_rgb, face.landmarks, face.box, geometry) for face in faces], unavailable)


class MaskPipeline:
    """Detect, crop, classify one image or frame. Any Detector and Classifier will do (facemask.core.protocols): the
    default is the shipped detector and the classification service over HTTP (ClassifierClient); LocalClassifier
    classifies in this process, and facemask.core.timing times either."""

    def __init__(self, detector: Detector | None = None, client: Classifier | None = None):
        self.detector: Detector = detector or create_detector()
        self.client: Classifier = client or ClassifierClient()
        self.classifier = FaceClassifier(self.client)

    def detect(self, image_rgb: np.ndarray) -> list[Face]:
        """The detector's faces in reading order: numbered the same in the JSON, the CLI and the page (issue 37:
        detector order read 23, 12, 25, 10 along a crowd's top row)."""
        found = self.detector.detect(image_rgb)
        return [found[index] for index in reading_order([face.box for face in found])]

    def process(self, image_rgb: np.ndarray) -> FrameResult:
        """Every detected face appears in the result: classified, or marked unclassified with the reason."""
        started = time.perf_counter()
        faces = self.detect(image_rgb)
        detected = time.perf_counter()
        classified = self.classifier.classify_faces(image_rgb, faces)
        predictions, error = classified.predictions, classified.error
        finished = time.perf_counter()

        results = Faces.from_detections(faces, predictions)
        timing = {"detect": round((detected - started) * 1e3, 1), "classify": round((finished - detected) * 1e3, 1),
                  "total": round((finished - started) * 1e3, 1)}
        return FrameResult(width=image_rgb.shape[1], height=image_rgb.shape[0], faces=results, timing_ms=timing,
                           error=error)

"""Execution providers by setting (issue 38): FACEMASK_ORT_PROVIDERS, the one-line stop when a provider cannot load
(real gunicorn starts, the real CLI), the providers /info reports; on a GPU (marked gpu) the same on CUDA."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import requests

from facemask.core.classifier import MaskClassifier
from facemask.core.detector import GPU_MAX_BATCH, create_detector
from facemask.core.images import decode_image
from facemask.core.paths import REPO_ROOT
from facemask.core.sessions import PROBE_MODEL, ProviderError, load_session, probe
from facemask.core.settings import Settings, SettingsError
from facemask.serving.local_server import SERVICES, free_port

SAMPLE = REPO_ROOT / "sample-images" / "group_mixed.jpg"
ON_GPU = ("cuda", "cpu")


def test_providers_setting_is_read_once_and_checked():
    assert Settings().ort_providers == ("cpu",)
    assert Settings.from_env({"FACEMASK_ORT_PROVIDERS": " TensorRT, cuda ,cpu"}).ort_providers == (
        "tensorrt", "cuda", "cpu")
    for bad in ("gpu", "cuda,cuda", ","):
        with pytest.raises(SettingsError, match="^FACEMASK_ORT_PROVIDERS must list some of cpu, cuda, tensorrt"):
            Settings.from_env({"FACEMASK_ORT_PROVIDERS": bad})


def test_probe_model_is_the_one_node_graph_it_says_it_is():
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.ones((1, 1, 1, 1), np.float32), "w")
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"])], "probe",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 8, 8])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8, producer_name="")
    assert model.SerializeToString() == PROBE_MODEL
    assert probe(("cpu",)) == ""


def _cpu_only() -> bool:
    import onnxruntime

    return "CUDAExecutionProvider" not in onnxruntime.get_available_providers()


cpu_only = pytest.mark.skipif(not _cpu_only(), reason="this machine's onnxruntime has the CUDA provider")


@cpu_only
def test_asking_for_cuda_on_a_cpu_build_is_one_line_naming_what_is_missing():
    with pytest.raises(ProviderError) as raised:
        load_session(PROBE_MODEL, "probe", providers=ON_GPU)
    message = str(raised.value)
    assert "\n" not in message and "asks for cuda" in message and "onnxruntime-gpu" in message
    assert "(CPU build)" in message and "CPUExecutionProvider" in message
    with pytest.raises(ProviderError, match="asks for cuda"):
        create_detector(providers=ON_GPU)
    with pytest.raises(ProviderError, match="asks for tensorrt, cuda"):
        MaskClassifier(providers=("tensorrt", "cuda", "cpu"))


@cpu_only
@pytest.mark.slow
@pytest.mark.parametrize("service", ["classification", "detection"])
def test_a_service_asked_for_cuda_on_a_cpu_build_stops_with_one_line(service):
    config, app = SERVICES[service]
    env = {**os.environ, "FACEMASK_ORT_PROVIDERS": "cuda,cpu", "BIND": f"127.0.0.1:{free_port()}"}
    started = subprocess.run([sys.executable, "-m", "gunicorn", "-c", config, app], cwd=REPO_ROOT, env=env,
                             capture_output=True, text=True, timeout=120)
    assert started.returncode == 1, started.stderr
    assert started.stderr.strip().splitlines() == [started.stderr.strip()], started.stderr  # one line, nothing else
    assert started.stderr.startswith("error: FACEMASK_ORT_PROVIDERS asks for cuda") and "onnxruntime-gpu" in \
        started.stderr


@cpu_only
def test_the_cli_asked_for_cuda_on_a_cpu_build_stops_with_one_line(tmp_path):
    result = subprocess.run([sys.executable, "infer.py", "--is_image", "--in_path", str(SAMPLE), "--out_path",
                             str(tmp_path)], cwd=REPO_ROOT, env={**os.environ, "FACEMASK_ORT_PROVIDERS": "cuda"},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: FACEMASK_ORT_PROVIDERS asks for cuda"), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not list(tmp_path.iterdir())


def test_info_of_both_services_names_the_cpu_provider(classifier_service, detection_service):
    classifier = requests.get(classifier_service.url + "/info", timeout=5).json()
    detector = requests.get(detection_service.url + "/info", timeout=5).json()["detector"]
    assert classifier["providers"] == ["CPUExecutionProvider"] == detector["providers"]


def test_the_start_up_log_names_the_provider(classifier_service, detection_service):
    assert classifier_service.log_path is not None and detection_service.log_path is not None
    assert " on CPUExecutionProvider, classes " in classifier_service.log_path.read_text()
    assert " on CPUExecutionProvider, classifier " in detection_service.log_path.read_text()


# ------------------------------------------------------------------------------- on a GPU (bench/gpu/device_bench.sh)
@pytest.mark.gpu
def test_both_models_run_on_cuda_and_find_what_the_cpu_finds():
    image = decode_image(SAMPLE)
    gpu, cpu = create_detector(providers=ON_GPU), create_detector()
    assert gpu.session.get_providers()[0] == "CUDAExecutionProvider" and gpu.config()["providers"][0] == \
        "CUDAExecutionProvider"
    assert gpu.max_batch == GPU_MAX_BATCH and cpu.max_batch == 1
    on_gpu, on_cpu = gpu.detect(image), cpu.detect(image)
    assert len(on_gpu) == len(on_cpu) > 0
    for a, b in zip(on_gpu, on_cpu):
        assert np.abs(a.box - b.box).max() < 1.0 and abs(a.det_score - b.det_score) < 1e-3
    crops = [np.asarray(image[int(f.box[1]):int(f.box[3]), int(f.box[0]):int(f.box[2])]) for f in on_cpu]
    classifier_gpu, classifier_cpu = MaskClassifier(providers=ON_GPU), MaskClassifier()
    assert classifier_gpu.info()["providers"][0] == "CUDAExecutionProvider"
    assert np.abs(classifier_gpu.predict(crops) - classifier_cpu.predict(crops)).max() < 1e-3


@pytest.mark.gpu
@pytest.mark.slow
def test_a_service_on_cuda_says_so_in_info():
    from facemask.serving.local_server import LocalService

    with LocalService("classification", workers=1, env={"FACEMASK_ORT_PROVIDERS": "cuda,cpu"}) as service:
        info = requests.get(service.url + "/info", timeout=5).json()
    assert info["providers"][0] == "CUDAExecutionProvider"


@cpu_only
def test_both_onnxruntime_builds_installed_is_named_with_the_fix(monkeypatch):
    import facemask.core.sessions

    monkeypatch.setattr(facemask.core.sessions, "_installed", lambda distribution: "1.31.1")
    with pytest.raises(ProviderError, match="both installed and the CPU build's files won: pip uninstall -y "
                                            "onnxruntime && pip install --force-reinstall --no-deps "
                                            "onnxruntime-gpu==1.31.1$"):
        load_session(PROBE_MODEL, "probe", providers=ON_GPU)

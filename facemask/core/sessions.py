"""The one way both model wrappers (detector, classifier) open an ONNX model: ONNX Runtime on the execution
providers FACEMASK_ORT_PROVIDERS names (the CPU by default).

A provider asked for is a provider used, or the start stops: ONNX Runtime itself falls back to the CPU with a log
line when the CUDA or TensorRT provider cannot load, which would leave a GPU server on its CPU, unnoticed.
Here the session's own provider list is checked after it is made, and a missing provider is a ProviderError whose one
line names the library that is not there (the CUDA, cuDNN or TensorRT version the installed onnxruntime-gpu needs).
"""
from __future__ import annotations

import contextlib
import ctypes
import importlib.metadata
import io
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnxruntime as ort

from facemask.core.errors import FacemaskError, ModelError
from facemask.core.settings import ORT_PROVIDERS

CPU_ONLY = ("cpu",)
CUDNN_LIBRARY = "libcudnn.so.9"  # the cuDNN major version every onnxruntime-gpu release since 1.19 is built against
# The provider libraries inside an onnxruntime-gpu install, whose load error names the CUDA library that is missing.
PROVIDER_LIBRARIES = {"cuda": "libonnxruntime_providers_cuda.so", "tensorrt": "libonnxruntime_providers_tensorrt.so"}
# A one-node graph (a 1x1 convolution of a 1x1x8x8 float input, made with onnx.helper; tests/test_providers.py builds
# it again and compares): running it on a provider loads everything a real model needs there, cuDNN included, in a
# second, in a process of its own (the gunicorn master must not start CUDA before it forks its workers).
PROBE_MODEL = bytes.fromhex(
    "080812003a670a0f0a01780a01771201792204436f6e76120570726f62652a13080108010801080110014201774a040000803f5a1b0a"
    "017812160a14080112100a0208010a0208010a0208080a020808621b0a017912160a14080112100a0208010a0208010a0208080a0208"
    "0842040a00100d")


class ProviderError(FacemaskError, RuntimeError):
    """An execution provider FACEMASK_ORT_PROVIDERS asks for that this machine's ONNX Runtime cannot run."""


def _installed(distribution: str) -> str:
    """The installed version of a distribution, or ''."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return ""


def _onnxruntime_build() -> str:
    """'onnxruntime-gpu 1.31.1 (CUDA 13.0)' or 'onnxruntime 1.32.0 (CPU build)'."""
    try:
        from onnxruntime.capi import build_and_package_info as build
    except ImportError:  # builds before 1.17 have no such module
        return f"onnxruntime {ort.__version__}"
    cuda = getattr(build, "cuda_version", "")
    return f"{build.package_name} {build.__version__} ({f'CUDA {cuda}' if cuda else 'CPU build'})"


def _missing_library(word: str) -> str:
    """What stops a provider that its onnxruntime build has from loading: the first library the dynamic loader
    cannot find (a CUDA or TensorRT library the provider links to, then cuDNN, which it opens later), or ''."""
    path = os.path.join(os.path.dirname(ort.__file__), "capi", PROVIDER_LIBRARIES.get(word, ""))
    for library in ([path] if word in PROVIDER_LIBRARIES else []) + ([CUDNN_LIBRARY] if word != "cpu" else []):
        try:
            ctypes.CDLL(library)
        except OSError as error:
            return str(error).split(":")[0] if library == path else library
    return ""


def check_providers(words: tuple[str, ...]) -> None:
    """ProviderError unless the installed ONNX Runtime offers every provider named (before any model is opened)."""
    available = ort.get_available_providers()
    missing = [word for word in words if ORT_PROVIDERS[word] not in available]
    if missing and _installed("onnxruntime") and _installed("onnxruntime-gpu"):
        raise ProviderError(
            f"FACEMASK_ORT_PROVIDERS asks for {', '.join(missing)}, but onnxruntime and onnxruntime-gpu are both "
            "installed and the CPU build's files won: pip uninstall -y onnxruntime && pip install --force-reinstall "
            f"--no-deps onnxruntime-gpu=={_installed('onnxruntime-gpu')}")
    if missing:
        raise ProviderError(
            f"FACEMASK_ORT_PROVIDERS asks for {', '.join(missing)}, but the installed {_onnxruntime_build()} offers "
            f"only {', '.join(available)}: install onnxruntime-gpu in its place (README: GPU), or leave the setting "
            "unset for the CPU")
    if any(word != "cpu" for word in words) and hasattr(ort, "preload_dlls"):
        # The CUDA and cuDNN libraries that `pip install onnxruntime-gpu[cuda,cudnn]` puts beside it are found here;
        # system-wide ones (a CUDA base image, LD_LIBRARY_PATH) are found by the loader as usual. It prints a line
        # per library it misses; the one line below names the first.
        with contextlib.redirect_stdout(io.StringIO()):
            ort.preload_dlls()
    for word in words:
        library = _missing_library(word)
        if library:
            raise ProviderError(f"the {word} provider of {_onnxruntime_build()} cannot load: {library} not found "
                                f"(it needs CUDA {_cuda_major()} and cuDNN 9, e.g. pip install "
                                "'onnxruntime-gpu[cuda,cudnn]'; README: GPU)")


def _provider_options(word: str) -> dict:
    if word == "tensorrt":  # engines are built once per input shape: keep them between starts
        return {"trt_engine_cache_enable": True,
                "trt_engine_cache_path": os.path.join(tempfile.gettempdir(), "facemask-trt-cache")}
    return {}


def load_session(model: str | bytes, source: str, num_threads: int | None = None,
                 what: str = "detector model", providers: tuple[str, ...] = CPU_ONLY) -> ort.InferenceSession:
    """An ONNX Runtime session on `providers` (FACEMASK_ORT_PROVIDERS' words, in the order tried) with num_threads
    intra-op threads (None or 0: ONNX Runtime's choice); a file that is not a loadable graph is a one-line
    ModelError, a provider that cannot run it a one-line ProviderError."""
    check_providers(providers)
    options = ort.SessionOptions()
    if num_threads:
        options.intra_op_num_threads = num_threads
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # CenterFace lists its weights as graph inputs: one warning per weight otherwise
    try:
        session = ort.InferenceSession(model, options,
                                       providers=[(ORT_PROVIDERS[word], _provider_options(word)) for word in providers])
    except Exception as error:  # ORT raises its own exception types for unreadable or invalid graphs
        if providers != CPU_ONLY and "provider" in str(error).lower():
            raise ProviderError(f"cannot open {what} {source} on {','.join(providers)}: "
                                f"{str(error).splitlines()[0]}") from None
        raise ModelError(f"cannot load {what} {source}: {error}") from None
    running = session.get_providers()
    for word in providers:
        if ORT_PROVIDERS[word] not in running:
            raise ProviderError(f"the {word} provider of {_onnxruntime_build()} loads but did not take the {what} "
                                "(no GPU visible, or a driver older than its CUDA? ONNX Runtime's log above says why)")
    return session


def _cuda_major() -> str:
    try:
        from onnxruntime.capi import build_and_package_info as build
    except ImportError:
        return "12 or 13"
    return (getattr(build, "cuda_version", "") or "12 or 13").split(".")[0]


def session_providers(session: ort.InferenceSession) -> list[str]:
    """The providers a session runs on, best first, as /info and the start-up log report them."""
    return list(session.get_providers())


def probe(words: tuple[str, ...]) -> str:
    """'' if PROBE_MODEL opens and runs on the providers `words` name, else the one line that says why not."""
    try:
        session = load_session(PROBE_MODEL, "probe", 1, what="probe model", providers=words)
        session.run(None, {"x": np.ones((1, 1, 8, 8), dtype=np.float32)})
    except FacemaskError as error:
        return str(error)
    except Exception as error:  # a provider that loads but fails its first run (cuDNN, kernels for this GPU)
        return f"the {words[0]} provider fails its first run: {str(error).splitlines()[0]}"
    return ""


def probe_in_child(words: tuple[str, ...]) -> str:
    """probe() in a process of its own: the gunicorn master checks the providers before forking its workers and
    must not have CUDA started in it when it does."""
    result = subprocess.run([sys.executable, "-m", "facemask.core.sessions", ",".join(words)], capture_output=True,
                            text=True)
    if result.returncode == 0:
        return ""
    lines = result.stderr.strip().splitlines()
    return lines[-1] if lines else f"provider probe exited with {result.returncode}"


if __name__ == "__main__":
    # python -m facemask.core.sessions cuda,cpu: exit 0, or 1 with the reason as the last line on stderr
    from facemask.core.settings import parse_providers

    reason = probe(parse_providers(sys.argv[1]))
    if reason:
        print(reason, file=sys.stderr)
    sys.exit(1 if reason else 0)

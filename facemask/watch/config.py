"""Several cameras in one process from one YAML file (`python -m facemask.watch --config cameras.yaml`).

    classifier_url: http://classification:3000   # optional: anything the command line takes, for every camera
    mqtt: mqtt://broker:1883
    cameras:
      door:                                      # the camera's name
        source: rtsp://user:pass@10.0.0.21/stream1
        listen: 0.0.0.0:8101                     # each camera its own live view, counts, metrics and event API
        analysis_fps: 5
        event_labels: [without_mask, incorrect]
        record: /data/recordings
      yard:
        source: rtsp://10.0.0.22/stream1
        listen: 0.0.0.0:8102
        privacy: pixelate

Each key is a command-line option (`analysis_fps` is `--analysis-fps`; a list is comma-separated; `true` turns a
flag on), so a camera takes exactly what one watch takes and is checked by the same parser; the top level applies
to every camera unless the camera says otherwise. The cameras share one detector session and one classifier
client, each runs on a thread of its own.
"""
from __future__ import annotations

from pathlib import Path

import yaml


class ConfigError(ValueError):
    """The config file cannot be used; one line."""


def camera_arguments(path: Path) -> dict[str, list[str]]:
    """Each camera's command line (without the program name), by camera name."""
    try:
        config = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigError(f"cannot read {path}: {error.strerror or error}") from error
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not YAML: {str(error).splitlines()[0]}") from error
    if not isinstance(config, dict) or not isinstance(config.get("cameras"), dict) or not config["cameras"]:
        raise ConfigError(f"{path}: expected a mapping with `cameras:`, one entry per camera")
    shared = {key: value for key, value in config.items() if key != "cameras"}
    cameras = {}
    for name, settings in config["cameras"].items():
        if not isinstance(settings, dict) or "source" not in settings:
            raise ConfigError(f"{path}: camera {name!r} needs at least a `source:`")
        cameras[str(name)] = ["--camera", str(name), *as_arguments({**shared, **settings})]
    listens = [arguments[arguments.index("--listen") + 1] for arguments in cameras.values()
               if "--listen" in arguments]
    if len(set(listens)) < len(listens) or (len(cameras) > 1 and len(listens) < len(cameras)):
        raise ConfigError(f"{path}: give every camera a `listen:` address of its own (or `none`)")
    return cameras


def as_arguments(settings: dict) -> list[str]:
    arguments: list[str] = []
    for key, value in settings.items():
        option = "--" + str(key).replace("_", "-")
        if value is True:
            arguments.append(option)
        elif value is False or value is None:
            continue
        elif isinstance(value, (list, tuple)):
            arguments += [option, ",".join(map(str, value))]
        else:
            arguments += [option, str(value)]
    return arguments

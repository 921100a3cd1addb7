"""GPU measurements (issue 38): the device script (device_bench.sh), what it carries (pack.py), the in-process
annotation the measurements share (inprocess.py) and the FP16 accuracy check (fp16_accuracy.py). The measurements
themselves are bench/gpu_bench.py."""

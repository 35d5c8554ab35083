"""int8 post-training quantisation for the runtimes that gain from it: ExecuTorch/XNNPACK
through the PT2E flow (``pt2e.py``) and ONNX Runtime through its quantisation tools
(``onnx_int8.py``). Both calibrate on ``calibration_inputs``: seeded samples plus
``validate.data`` when the manifest has it."""

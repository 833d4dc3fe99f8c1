"""Deployment outside PyTorch's training stack: ONNX export (verified), onnxruntime execution, int8."""

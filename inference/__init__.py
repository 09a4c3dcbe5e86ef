"""inference: the LSTM's features, training pipeline, model server (TF Serving
protocol over onnxruntime) and the inference service."""

"""`make train`: the LSTM's training pipeline.

Run as `python -m inference.training` in the training environment (`.train-venv`, made
by `make train-setup`), the only place TensorFlow is installed. TensorFlow is imported
only by `inference.training.model` (and lazily by the pipeline when it gets there), so
data preparation, evaluation and the model card stay importable, and unit-tested, from
the runtime `.venv`, which never has TensorFlow.

Modules:
    data        candles → windows, features, labels; the chronological split with purge
    evaluation  metrics, baselines, temperature scaling, bootstrap comparisons (numpy)
    report      metrics.json, MODEL_CARD.md and the reliability diagram
    runs        the `inference_training_runs` record of each run in the database
    model       the Keras LSTM: build, train, calibrate into the export, ONNX, parity
    pipeline    the command line and the order of it all
"""

"""AIFX's model server: the TensorFlow Serving gRPC API over onnxruntime.

It serves `tensorflow.serving.PredictionService` (Predict, GetModelMetadata) and
`tensorflow.serving.ModelService` (GetModelStatus) from the official
`tensorflow_serving.apis` stubs, running each version's `model.onnx` with onnxruntime.
It never imports TensorFlow (only the protobuf-only `tensorflow.core` modules of
tensorflow-protobuf), so pointing clients at a real `tensorflow_model_server` on the same
`models/` folder (which loads the SavedModel of each version) is a change of address.
Health checking and reflection come from the common bootstrap, like every AIFX service.

    python -m inference.model_server --port 8500 --model_name lstm \\
        --model_base_path models/lstm [--enable_batching]

Flags, and how they map to tensorflow_model_server's (defaults from AIFX settings):

- `--port`: same flag; default `AIFX_MODEL_SERVER_PORT` (8500).
- `--model_name`, `--model_base_path`: same flags; defaults `AIFX_MODEL_NAME` (lstm) and
  `AIFX_MODEL_BASE_PATH` (models/lstm).
- `--model_config_file`: same flag and format (text ModelServerConfig), read once at
  start: `model_config_list` entries with `name`, `base_path`, `model_version_policy`
  (latest / all / specific) and `version_labels`; several models allowed;
  `model_platform` is ignored. It replaces --model_name/--model_base_path.
- `--file_system_poll_wait_seconds`: same flag and default (1 s; fractions allowed);
  <= 0 polls once at start.
- `--enable_batching` (`--enable_batching=true|false` too): same flag; default
  `AIFX_MODEL_SERVER_ENABLE_BATCHING` (false).
- `--batching_parameters_file`: same flag and format; `max_batch_size`,
  `batch_timeout_micros` and `num_batch_threads` are used, other fields ignored.
- `--max_batch_size`, `--batch_timeout_micros`, `--num_batch_threads`: AIFX extensions
  (TF Serving has them only in the batching file). A flag beats the file, the file beats
  the settings `AIFX_MODEL_SERVER_MAX_BATCH_SIZE` (64) and
  `AIFX_MODEL_SERVER_BATCH_TIMEOUT_MICROS` (0); threads default to min(2, cores).
- `--tensorflow_intra_op_parallelism`, `--tensorflow_inter_op_parallelism`: TF session
  threads there, onnxruntime intra/inter-op threads per run here; default 1 each.
- `--model_version_policy latest|latest:N|all|specific:1,2`: AIFX extension for the
  single-model flags (TF Serving sets policies only in the model config file); default
  `latest` (= latest:1, TF Serving's default).
- `--version_labels stable=1,canary=2`: AIFX extension likewise (TF Serving: the config
  file's `version_labels`). No label exists unless configured.
- `--host`, `--metrics_port`: AIFX extensions (`AIFX_BIND_HOST`,
  `AIFX_MODEL_SERVER_METRICS_PORT`; Prometheus, 0 disables). TF Serving binds every
  interface and exposes monitoring on its REST port.
- Not provided: `--rest_api_port`, `--grpc_socket_path`, SSL, model warm-up files, and
  the rest of TF Serving's flags.

Behaviour, as tensorflow_model_server's:

- A version is a numbered folder `models/<name>/<N>/`; it counts once
  `aifx_metadata.json` exists (training writes it last). The newest complete version is
  served (policy `latest:1`); the base path is polled, a new version is loaded without a
  restart and the old one unloaded once the new one is AVAILABLE; a version whose load
  fails is reported END with its error and the previous one keeps serving; removed
  folders are unloaded.
- `model_spec.version` selects a loaded version, `model_spec.version_label` a label from
  `--version_labels` or the config file; no label exists unless configured. Unknown model
  or version: NOT_FOUND. Unknown label: INVALID_ARGUMENT ("Unrecognized servable version
  label"), as TF Serving. Only the `serving_default` signature exists; another name is
  FAILED_PRECONDITION ("Serving signature key ... not found."), as TF Serving.
- Predict takes `TensorProto`s by input alias (`candles`), as `tensor_content` bytes or
  `float_val`, checks dtype (DT_FLOAT) and shape ([N, lookback, features]) and answers
  `output_0` as float_val [N, 3], with the model name, version and signature in
  `model_spec`; `output_filter` is honoured. Problems are INVALID_ARGUMENT naming the
  input (all of them at once). Classify, Regress, MultiInference and
  HandleReloadConfigRequest answer UNIMPLEMENTED.
- With batching on, concurrent Predicts on the same version are merged into one run (see
  `batching`); each caller gets its own rows.

`inference.tensor_proto` converts arrays to and from TensorProtos for clients.
"""

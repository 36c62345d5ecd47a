"""Running a pose model: ``PoseModel`` (the one face of every backend), the inference set-ups
(``optimize``), ONNX Runtime and int8 sessions (``onnxrt``, ``quantize``), what an exported file
carries (``export_format``) and the top-down engine (``engine``, ``topdown``).  Loading weights into
a ``PoseModel``: :mod:`frpose_cli.load`; choosing the precision: :mod:`frpose_cli.precision`."""

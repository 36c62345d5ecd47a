"""Running a pose model: any weights → a ``PoseModel`` (``load``), its inference set-ups and
precisions, the accuracy gate and ``--precision auto``, the machine's hardware and ceiling."""

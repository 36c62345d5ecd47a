"""Help texts of the options several verbs share (one wording everywhere; no heavy imports here)."""

PRECISION_HELP = ("fp32 | bf16 | fp16 | int8 | auto (default: auto on the CPU, fp32 on GPUs; $FRPOSE_PRECISION "
                  "overrides). auto runs the fastest precision this machine has natively that passes the "
                  "accuracy gate, chosen once per model and machine and cached (docs/deployment.md)")
CALIB_DATA_HELP = ("COCO root whose people join the vendored ones: its train2017 calibrates int8, its val2017 "
                   "feeds the accuracy gate")

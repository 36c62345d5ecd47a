# Run mmpose 1.0.0rc0's own tools/misc/publish_model.py; torch.load defaulted to weights_only=False
# in the torch of 2022, so restore that default for this one call.
import functools, runpy, sys, torch
torch.load = functools.partial(torch.load, weights_only=False)
sys.argv = ["publish_model.py", sys.argv[1], sys.argv[2]]
runpy.run_path("dl/mmpose/.mim/tools/misc/publish_model.py", run_name="__main__")

"""A small ONNX file with frpose metadata, converted to float16 inputs/outputs by onnxconverter-common
1.16.0's float16.convert_float_to_float16 (keep_io_types=False, its default), as common float16 tools leave it.
The network is a stand-in (one 3x3 convolution to 17 maps at input resolution): the metadata says sbn-r18 64x48."""
import io, json, sys
import onnx, torch
from onnxconverter_common import float16
from frpose_cli.cards import load_card
from frpose_cli.runtime.export_format import METADATA_KEY, export_metadata

torch.manual_seed(0)
net = torch.nn.Sequential(torch.nn.Conv2d(3, 17, 3, padding=1)).eval()
card = load_card("sbn-r18", (64, 48))
buf = io.BytesIO()
torch.onnx.export(net, (torch.zeros(1, 3, 64, 48),), buf, dynamo=False, opset_version=17, input_names=["images"],
                  output_names=["heatmaps"], dynamic_axes={"images": {0: "batch"}, "heatmaps": {0: "batch"}})
model = onnx.load_from_string(buf.getvalue())
entry = model.metadata_props.add()
entry.key, entry.value = METADATA_KEY, json.dumps(export_metadata(card, None, "onnx", True, 1, 17, "tiny stand-in"))
onnx.save(model, sys.argv[1] + "/tiny_fp32.onnx")
onnx.save(float16.convert_float_to_float16(model), sys.argv[1] + "/tiny_fp16_io.onnx")

"""Runtime layer: tokenizer and onnxruntime session. The only layer that imports onnxruntime."""

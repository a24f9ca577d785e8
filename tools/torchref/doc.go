// Package torchref checks lorakit's decoder (pkg/llama) against a plain
// PyTorch transcription of transformers' modeling code and PEFT's adapter
// layers, torchref.py beside this file, for every architecture of the
// registry, and PEFT's prompt and prefix tuning (PeftModelForCausalLM's
// inputs_embeds, labels and past_key_values) on several of them.
//
// The test builds a tiny random checkpoint of each case (config.json,
// model.safetensors, a PEFT adapter and a packed batch, all from a seeded
// generator), runs lorakit's f32 model on it and compares the logits, the
// loss and the gradient of every trainable adapter tensor with
// testdata/<case>.safetensors, the script's output. When /usr/bin/python3
// imports torch, the script is run as well ($LORAKIT_TORCH_PYTHON names another
// interpreter) and its fresh output must equal
// the golden file (go test -run TorchRef -update rewrites them); otherwise
// the test says so and compares with the golden files alone.
//
//	/usr/bin/python3 tools/torchref/torchref.py DIR
//
// The package has no code of its own beyond its tests.
package torchref

// Package arch is the registry of the decoder architectures lorakit runs:
// everything a tool needs to know about a model family, written once.
//
// For each architecture (one file each: llama.go, mistral.go, qwen2.go,
// qwen3.go, gemma.go, gemma2.go, gemma3.go, phi3.go) the registry knows:
//
//   - how to read its config.json (ParseConfig) into one common Config, with
//     the transformers config class's defaults, in the transformers v4
//     (rope_theta + rope_scaling) and v5 (rope_parameters) layouts; every
//     field that changes the math is represented or refused by name
//     (ErrUnsupported), malformed values give ErrConfig;
//   - the forward pass it needs (Config.Features and Config.Attention), as
//     plain data with the numerics contract in the doc comments, and the pure
//     math that belongs with the config (Rope.InvFreq, Rope.CosSin,
//     EmbedScaleValue);
//   - the tensors of its Hugging Face checkpoint, their shapes and roles
//     (Config.Tensors, Config.Tensor), and for a multimodal wrapper which
//     checkpoint names are the language model's (Config.TextName);
//   - its LoRA targets and what PEFT's "all-linear" selects (Config.Linears,
//     Config.AllLinear, Config.ResolveTargets, Config.LoRAParams);
//   - its parameter count as torch counts it and the part QLoRA quantizes
//     (Config.Params, Config.Quantizable);
//   - its GGUF mapping for llama.cpp (Config.GGUF): architecture name,
//     metadata, tensor names and transforms, generated tensors, how LoRA
//     modules map onto adapter tensors, and every place where llama.cpp
//     computes something other than transformers, with the remedy (fold a
//     factor, write a key, cap the context, note, or refuse).
//
// Built-in shapes (Shapes, Shape) are real config.json files for planning
// without weights. Supported, SupportedList, Table and Unsupported give the
// one list of supported architectures and the one refusal every tool uses.
//
// The package knows no files but its embedded shapes, and no tensor data:
// pkg/checkpoint reads config.json and calls ParseConfig, pkg/peft plans
// adapters from Linears, pkg/export writes what GGUF describes, the model
// implements Features.
//
// # Adding an architecture
//
// Adding a decoder is one file here plus the ops it lacks:
//
//  1. Write <arch>.go: register an Arch with its model_type, transformers
//     classes, llama.cpp architecture name and the config class's defaults;
//     a parse function that reads its own fields into Features and
//     Attention (reuse attentionBias, slidingPattern, singleRope,
//     gemmaSandwich, ...), refusing by name whatever it does not implement;
//     a gguf function that states llama.cpp's rules and divergences
//     (needSiLU, ropeSupport, noSlidingWindow, foldQueryScale, keys).
//  2. If its layout needs something Features cannot say yet (a new norm
//     placement, a new fusion), add the field to Features with its numerics
//     contract, to layerSlots for the tensors, and to ggufBase for the names.
//  3. Add its real config.json to shapes/ with its source in
//     shapes/README.md, and its counts to TestShapeCounts; run
//     go test -run GGUFGolden -update and read the golden file.
//  4. Implement the ops the model lacks (pkg/compute: CPU reference, CUDA,
//     conformance suite).
//  5. Add a case to internal/randmodel's Tiny and to pkg/export's archCases:
//     the llama.cpp interop test then checks the export (base, adapter,
//     merge) against lorakit's forward, and TestArchitectureExports its
//     values; add its row to the README's table of architectures.
package arch

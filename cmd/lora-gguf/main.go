// Command lora-gguf exports models and adapters to GGUF for llama.cpp.
package main

import "github.com/lorakit/lorakit/pkg/cli"

func main() {
	cli.NotYet("lora-gguf", "export a model or an adapter to GGUF for llama.cpp")
}

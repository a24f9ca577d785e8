package main

import (
	"github.com/lorakit/lorakit/pkg/errclass"
	"github.com/lorakit/lorakit/pkg/tokenizer"
)

// chatFlags set the chat template's variables for messages data, in
// training and in eval.
type chatFlags struct {
	ChatTemplateKwargs string `name:"chat-template-kwargs" placeholder:"JSON" help:"Chat template variables for messages data, as a JSON object (transformers' apply_chat_template(**kwargs)), e.g. '{\"enable_thinking\": false}'."`
	EnableThinking     *bool  `name:"enable-thinking" help:"Set the enable_thinking template variable (Qwen3): --enable-thinking=false renders the conversations as with thinking off, the empty <think></think> block in the assistant header and so out of the loss."`
}

// kwargs returns the template variables the flags give; nil for none.
func (c *chatFlags) kwargs() (map[string]any, error) {
	var kw map[string]any
	if c.ChatTemplateKwargs != "" {
		var err error
		if kw, err = tokenizer.ParseTemplateKwargs([]byte(c.ChatTemplateKwargs)); err != nil {
			return nil, errclass.Usagef("--chat-template-kwargs: %w", err)
		}
	}
	if c.EnableThinking != nil {
		if v, ok := kw["enable_thinking"]; ok && v != *c.EnableThinking {
			return nil, errclass.Usagef("--enable-thinking=%t contradicts --chat-template-kwargs' enable_thinking: %v", *c.EnableThinking, v)
		}
		if kw == nil {
			kw = map[string]any{}
		}
		kw["enable_thinking"] = *c.EnableThinking
	}
	return kw, nil
}

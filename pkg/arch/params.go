package arch

// ParamCounts is a model's parameter count by part, as torch counts
// named_parameters: a tied lm_head counts once (under Embeddings), biases
// count with their projection, q/k norms with the norms.
type ParamCounts struct {
	Embeddings, Attention, MLP, Norms, LMHead int64
}

// Total is the sum of all parts.
func (p ParamCounts) Total() int64 {
	return p.Embeddings + p.Attention + p.MLP + p.Norms + p.LMHead
}

// Params counts the text model's parameters from the config.
func (c *Config) Params() ParamCounts {
	var p ParamCounts
	layers := int64(c.Layers)
	for _, s := range c.layerSlots() {
		n := int64(1)
		for _, d := range s.shape {
			n *= d
		}
		switch s.role {
		case RoleAttention:
			p.Attention += n * layers
		case RoleMLP:
			p.MLP += n * layers
		case RoleNorm:
			p.Norms += n * layers
		}
	}
	embed, tail := c.globalTensors()
	p.Embeddings = embed.Params()
	for _, t := range tail {
		switch t.Role {
		case RoleNorm:
			p.Norms += t.Params()
		case RoleLMHead:
			p.LMHead += t.Params()
		}
	}
	return p
}

// Quantizable counts the parameters QLoRA stores in 4 bits: the weights of
// every Linear inside the decoder layers. The rest (embeddings, lm_head,
// norms, biases) stays in 16 bits.
func (c *Config) Quantizable() int64 {
	var n int64
	for _, s := range c.layerSlots() {
		if s.linear && !s.bias {
			n += s.inFeat * s.outFeat
		}
	}
	return n * int64(c.Layers)
}

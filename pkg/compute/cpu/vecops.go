package cpu

func dot(a, b []float32) float32 { return dotGeneric(a, b) }

func axpy(y, x []float32, alpha float32) { axpyGeneric(y, x, alpha) }

func exps(x []float32) { expsGeneric(x) }

func decode4(out []float32, in []byte, t *[16]float32) { decode4Generic(out, in, t) }

func decode4BF16(out []uint16, in []byte, t *[16]uint16) { decode4BF16Generic(out, in, t) }

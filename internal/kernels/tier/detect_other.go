//go:build purego || !(amd64 || arm64)

package tier

func supported() []Tier { return []Tier{Generic} }

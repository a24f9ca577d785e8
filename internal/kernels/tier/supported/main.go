// Command supported prints the CPU tiers this machine and build can run,
// lowest first, separated by spaces (make test forces each in turn with
// LORAKIT_CPU).
package main

import (
	"fmt"
	"strings"

	"github.com/lorakit/lorakit/internal/kernels/tier"
)

func main() {
	var names []string
	for _, t := range tier.Supported() {
		names = append(names, t.String())
	}
	fmt.Println(strings.Join(names, " "))
}

package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
)

// Example is one prompt/completion pair of the demo task.
type Example struct {
	Prompt     string `json:"prompt"`
	Completion string `json:"completion"`
}

// taskLen is the length of the task's words.
const taskLen = 4

// rot13 maps each lowercase letter 13 places on.
func rot13(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'a' && c <= 'z' {
			b[i] = 'a' + (c-'a'+13)%26
		}
	}
	return string(b)
}

// TaskExample is the demo task on word w: the prompt "w=" and its rot13.
func TaskExample(w string) Example { return Example{Prompt: w + "=", Completion: rot13(w)} }

// Split draws nTrain training and nTest held-out words of taskLen random
// lowercase letters from seed; no word appears twice or in both sets.
func Split(seed uint64, nTrain, nTest int) (train, test []Example) {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	seen := map[string]bool{}
	word := func() string {
		for {
			b := make([]byte, taskLen)
			for i := range b {
				b[i] = byte('a' + r.IntN(26))
			}
			if w := string(b); !seen[w] {
				seen[w] = true
				return w
			}
		}
	}
	for range nTest {
		test = append(test, TaskExample(word()))
	}
	for range nTrain {
		train = append(train, TaskExample(word()))
	}
	return train, test
}

// WriteJSONL writes one example per line.
func WriteJSONL(w io.Writer, ex []Example) error {
	for _, e := range ex {
		b, err := json.Marshal(e)
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintf(w, "%s\n", b); err != nil {
			return err
		}
	}
	return nil
}

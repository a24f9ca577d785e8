package arch

import (
	"os"
	"strings"
	"testing"
)

// TestShapeCounts checks every built-in shape's parameter count, the part
// QLoRA quantizes, and the LoRA trainable counts at r = 16.
//
// Totals: computed here from the config and equal to the published figure
// (model cards and the Hub's safetensors parameter count): Llama 3.1 8B
// 8.03B, Llama 3.2 1B 1.24B, Mistral 7B v0.3 7.25B, Qwen2.5-7B "7.61B,
// 6.53B non-embedding", Qwen3-8B "8.2B, 6.95B non-embedding", Gemma 2 9B
// 9.24B, Phi-3.5-mini 3.82B. Gemma 3 4B's 4.3B include the 0.42B SigLIP
// vision tower; its language model is the 3,880,263,168 computed here.
// LoRA counts are Σ r·(in+out) over the modules, e.g. Llama 3.1 8B q,k,v,o:
// 32·16·((4096+4096) + 2·(4096+1024) + (4096+4096)) = 13,631,488.
func TestShapeCounts(t *testing.T) {
	for _, tc := range []struct {
		shape                 string
		total, nonEmbedding   int64
		quantizable           int64
		qkvo, allLinear       int64
		attnTargets, allNames string
	}{
		{"llama3-8b", 8_030_261_248, 6_979_588_096, 6_979_321_856, 13_631_488, 41_943_040, "", "q_proj k_proj v_proj o_proj gate_proj up_proj down_proj"},
		{"llama3.2-1b", 1_235_814_400, 973_146_112, 973_078_528, 3_407_872, 11_272_192, "", ""},
		{"mistral-7b-v0.3", 7_248_023_552, 6_979_588_096, 6_979_321_856, 13_631_488, 41_943_040, "", ""},
		{"qwen2.5-7b", 7_615_616_512, 6_525_621_760, 6_525_288_448, 10_092_544, 40_370_176, "", ""},
		{"qwen3-8b", 8_190_735_360, 6_946_075_648, 6_945_767_424, 15_335_424, 43_646_976, "", ""},
		{"gemma2-9b", 9_241_705_984, 8_324_201_984, 8_323_596_288, 17_891_328, 54_018_048, "", ""},
		{"gemma3-4b", 3_880_263_168, 3_209_010_688, 3_208_642_560, 8_912_896, 29_802_496, "", ""},
		{"phi3.5-mini", 3_821_079_552, 3_624_078_336, 3_623_878_656, 9_437_184, 25_165_824, "qkv_proj o_proj", "o_proj qkv_proj gate_up_proj down_proj"},
	} {
		t.Run(tc.shape, func(t *testing.T) {
			c, err := Shape(tc.shape)
			if err != nil {
				t.Fatal(err)
			}
			p := c.Params()
			if p.Total() != tc.total || p.Total()-p.Embeddings-p.LMHead != tc.nonEmbedding {
				t.Errorf("total %d non-embedding %d, want %d %d", p.Total(), p.Total()-p.Embeddings-p.LMHead, tc.total, tc.nonEmbedding)
			}
			if q := c.Quantizable(); q != tc.quantizable {
				t.Errorf("quantizable %d, want %d", q, tc.quantizable)
			}
			attn := strings.Fields("q_proj k_proj v_proj o_proj")
			if tc.attnTargets != "" {
				attn = strings.Fields(tc.attnTargets)
			}
			if n, err := c.LoRAParams(16, attn); err != nil || n != tc.qkvo {
				t.Errorf("attention LoRA r=16: %d %v, want %d", n, err, tc.qkvo)
			}
			if n, err := c.LoRAParams(16, []string{"ALL-LINEAR"}); err != nil || n != tc.allLinear {
				t.Errorf("all-linear r=16: %d %v, want %d", n, err, tc.allLinear)
			}
			if tc.allNames != "" && strings.Join(c.AllLinear(), " ") != tc.allNames {
				t.Errorf("all-linear = %v", c.AllLinear())
			}
		})
	}
}

// TestShapeSources checks that the README names a source for every shape.
func TestShapeSources(t *testing.T) {
	b, err := os.ReadFile("shapes/README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range Shapes() {
		if !strings.Contains(string(b), "`"+s+".json`") {
			t.Errorf("shapes/README.md does not describe %s.json", s)
		}
	}
	if _, err := Shape("nope"); err == nil || !strings.Contains(err.Error(), "llama3-8b") {
		t.Errorf("unknown shape: %v", err)
	}
	if _, err := ShapeJSON("../arch"); err == nil {
		t.Error("ShapeJSON accepted a path")
	}
}

// TestLlamaPlanFigures keeps the numbers of the existing plan tests: Llama
// 3.1 8B at r = 16, and the fixture's tiny Llama.
func TestLlamaPlanFigures(t *testing.T) {
	c, err := Shape("llama3-8b")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		targets []string
		want    int64
	}{
		{[]string{"q_proj", "k_proj", "v_proj", "o_proj"}, 13_631_488},
		{[]string{"q_proj", "v_proj"}, 6_815_744},
		{[]string{"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}, 41_943_040},
		{[]string{"embed_tokens", "lm_head"}, 2 * 16 * (128256 + 4096)},
	} {
		if n, err := c.LoRAParams(16, tc.targets); err != nil || n != tc.want {
			t.Errorf("%v: %d %v, want %d", tc.targets, n, err, tc.want)
		}
	}
	tiny := mustParse(t, `{"model_type":"llama","hidden_size":64,"intermediate_size":128,"num_hidden_layers":2,"num_attention_heads":4,
		"num_key_value_heads":2,"head_dim":16,"vocab_size":256}`)
	// PEFT's "all params" of the fixture's tiny Llama (123,200) minus its
	// 16,384 LoRA parameters.
	if n := tiny.Params().Total(); n != 123200-16384 {
		t.Errorf("tiny llama: %d parameters", n)
	}
	if n, _ := tiny.LoRAParams(8, []string{"all-linear"}); n != 16384 {
		t.Errorf("tiny llama all-linear r=8: %d", n)
	}
}

// TestTargetTable: one line per architecture with the targets it accepts.
func TestTargetTable(t *testing.T) {
	lines := strings.Split(strings.TrimSpace(TargetTable()), "\n")
	if len(lines) != len(All()) {
		t.Fatalf("%d lines for %d architectures", len(lines), len(All()))
	}
	for i, a := range All() {
		if !strings.HasPrefix(lines[i], a.ModelType+" ") || !strings.HasSuffix(lines[i], ", all-linear") {
			t.Errorf("line %q", lines[i])
		}
	}
	if !strings.Contains(TargetTable(), "phi3         o_proj, qkv_proj, gate_up_proj, down_proj, lm_head, embed_tokens, all-linear") {
		t.Errorf("phi3's targets:\n%s", TargetTable())
	}
}

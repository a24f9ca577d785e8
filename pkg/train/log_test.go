package train

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const testRun = `{"run":{"base":"models/Llama-3.2-1B","model_type":"llama","data":"d.jsonl","method":"lora","rank":16,"alpha":32,` +
	`"targets":["q_proj","v_proj"],"steps":4,"examples":10,"settings":{"lr":0.0002},"device":"cpu","precision":"f32"}}`

func TestReadLog(t *testing.T) {
	log := testRun + "\n" +
		`{"step":1,"loss":2.5,"lr":0,"grad_norm":1,"tokens":10,"tokens_per_s":5,"epoch":0.25,"targets":8}` + "\n\n" +
		`{"step":2,"loss":2,"eval_loss":2.25,"future_key":[1]}` + "\n" +
		`{"step":4,"loss":1.5}`
	l, err := ReadLog(strings.NewReader(log), "log.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	if l.Run == nil || l.Run.Rank != 16 || l.Run.Base != "models/Llama-3.2-1B" || l.Run.Settings.LR != 2e-4 {
		t.Errorf("run %+v", l.Run)
	}
	if len(l.Steps) != 3 || l.Steps[0].Targets != 8 || l.Steps[1].EvalLoss == nil || *l.Steps[1].EvalLoss != 2.25 ||
		l.Steps[2].Step != 4 || l.Steps[2].Loss != 1.5 {
		t.Errorf("steps %+v", l.Steps)
	}
	if got, want := l.Title("log.jsonl"), "Llama-3.2-1B (llama): LoRA r=16 α=32, 4 steps"; got != want {
		t.Errorf("title %q, want %q", got, want)
	}
	l.Steps = l.Steps[:2]
	if got, want := l.Title("log.jsonl"), "Llama-3.2-1B (llama): LoRA r=16 α=32, 2 of 4 steps"; got != want {
		t.Errorf("title of a stopped run %q, want %q", got, want)
	}
	l.Run.Method, l.Run.Base = MethodIA3, "-"
	if got, want := l.Title("log.jsonl"), "stdin (llama): IA3, 2 of 4 steps"; got != want {
		t.Errorf("IA3 title %q, want %q", got, want)
	}

	// The last line of a log still being written.
	l, err = ReadLog(strings.NewReader(`{"step":1,"loss":3}`+"\n"+`{"step":2,"lo`), "log.jsonl")
	if err != nil || len(l.Steps) != 1 {
		t.Errorf("a log with a torn last line: %+v %v", l, err)
	}

	// A log written before the run header existed.
	l, err = ReadLog(strings.NewReader(`{"step":1,"loss":3}`+"\n"), "runs/old.jsonl")
	if err != nil || l.Run != nil || len(l.Steps) != 1 {
		t.Fatalf("%+v %v", l, err)
	}
	if got, want := l.Title("runs/old.jsonl"), "old.jsonl: 1 step"; got != want {
		t.Errorf("title %q, want %q", got, want)
	}
}

func TestReadLogErrors(t *testing.T) {
	first := `{"step":1,"loss":2}` + "\n"
	for _, c := range []struct{ log, msg string }{
		{first + "\n" + `not json`, "line 3: train: invalid training log: not a JSON object"},
		{first + `[1]`, "line 2: train: invalid training log: not a JSON object"},
		{first + `{"step":2` + "\n", "line 2: train: invalid training log: unexpected end of JSON input"},
		{first + `{"step":2}`, "line 2: train: invalid training log: neither"},
		{first + `{"step":2}`, "line 2: train: invalid training log: neither the run header nor an update"},
		{first + `{"loss":2}`, "line 2: train: invalid training log: neither"},
		{first + `{"step":"2","loss":1}`, "line 2: train: invalid training log: json: cannot unmarshal"},
		{first + `{"step":2.5,"loss":1}`, "line 2:"},
		{first + `{"step":2,"loss":"x"}`, "line 2:"},
		{first + `{"step":2,"loss":1,"eval_loss":"x"}`, "line 2:"},
		{first + `{"step":1,"loss":1}`, "line 2: train: invalid training log: step 1 after step 1: steps must increase"},
		{`{"step":0,"loss":1}`, "line 1: train: invalid training log: step 0 after the start"},
		{testRun + "\n" + first + testRun, "line 3: train: invalid training log: a second run header"},
		{`{"run":{},"step":1,"loss":1}`, "line 1: train: invalid training log: both a run header and a step"},
		{first + `{"step":2,"loss":1e999}`, "line 2:"},
		{"", "log.jsonl: train: invalid training log: no updates in it"},
		{"\n \n", "no updates"},
		{testRun + "\n", "no updates"},
		{first + `{"step":2,"loss":1,"pad":"` + strings.Repeat("x", maxLogLine) + `"}`, "line 2: train: invalid training log: longer than"},
	} {
		_, err := ReadLog(strings.NewReader(c.log), "log.jsonl")
		if !errors.Is(err, ErrLog) || !strings.Contains(err.Error(), "log.jsonl: ") || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%.80q: %v (want %q)", c.log, err, c.msg)
		}
	}
	if _, err := ReadLogFile(filepath.Join(t.TempDir(), "missing.jsonl"), nil); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

// TestOpenLogResume: a resumed run keeps the run header and the steps up
// to its checkpoint, and drops later or torn lines.
func TestOpenLogResume(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log.jsonl")
	write(t, path, testRun+"\n"+`{"step":1,"loss":3}`+"\n"+`{"step":2,"loss":2}`+"\n"+`{"step":3,"loss":1}`+"\n"+`{"step":4,"lo`)
	f, hasRun, err := openLog(path, true, 2)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"step":3,"loss":1.5}` + "\n")
	f.Close()
	l, err := ReadLogFile(path, nil)
	if err != nil || !hasRun || l.Run == nil || len(l.Steps) != 3 || l.Steps[2].Loss != 1.5 {
		t.Errorf("%+v %v %v", l, hasRun, err)
	}
	write(t, path, `{"step":1,"loss":3}`+"\n")
	if f, hasRun, err = openLog(path, true, 1); err != nil || hasRun {
		t.Errorf("a log without a header: %v %v", hasRun, err)
	}
	f.Close()
	if f, hasRun, err = openLog(path, false, 0); err != nil || hasRun {
		t.Errorf("a new log: %v %v", hasRun, err)
	}
	f.Close()
	if b, _ := os.ReadFile(path); len(b) != 0 {
		t.Errorf("a new log is not truncated: %q", b)
	}
}

func FuzzReadLog(f *testing.F) {
	for _, s := range []string{
		testRun + "\n" + `{"step":1,"loss":2.5}` + "\n" + `{"step":3,"loss":2,"eval_loss":2.1}`,
		`{"step":1,"loss":0}`, `{"step":1,"loss":-1e308}` + "\n" + `{"step":2,"loss":1e308}`,
		`{"step":1,"loss":5,"eval_loss":0}`, `{"run":null}`, `{"step":9007199254740993,"loss":1}`, "\n", `{"step":1,"loss":1}{}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		l, err := ReadLog(strings.NewReader(string(data)), "f")
		if err != nil {
			if !errors.Is(err, ErrLog) {
				t.Fatalf("error without ErrLog: %v", err)
			}
			return
		}
		for i := 1; i < len(l.Steps); i++ {
			if l.Steps[i].Step <= l.Steps[i-1].Step {
				t.Fatalf("steps %d then %d", l.Steps[i-1].Step, l.Steps[i].Step)
			}
		}
		// Whatever was accepted can be drawn.
		for _, logY := range []bool{false, true} {
			o := PlotOptions{Width: minPlotSide, Height: minPlotSide, LogY: logY, Smooth: 3}
			if err := l.WritePlot(io.Discard, "svg", o, "f"); err != nil && !logY {
				t.Fatalf("plot: %v", err)
			}
		}
	})
}

package train

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// The --log file is JSONL: a first line {"run": RunInfo} that describes the
// run, then one StepResult per update. A resumed run keeps the lines up to
// its checkpoint and appends to them, so the file reads as one run.

// RunInfo describes a training run: the first line of its --log file.
type RunInfo struct {
	Base      string `json:"base"` // as given; "-" is stdin
	ModelType string `json:"model_type,omitempty"`
	Data      string `json:"data"`
	// Method is "lora", "dora", "ia3" or "prompt"; Rank and Alpha are
	// those of a LoRA or DoRA adapter (the largest, when a rank pattern
	// varies them); VirtualTokens those of prompt tuning.
	Method        string   `json:"method"`
	Rank          int      `json:"rank,omitempty"`
	Alpha         float64  `json:"alpha,omitempty"`
	VirtualTokens int      `json:"virtual_tokens,omitempty"`
	Targets       []string `json:"targets"`
	// ChatTemplateKwargs are the chat template's variables, when set.
	ChatTemplateKwargs map[string]any `json:"chat_template_kwargs,omitempty"`
	// Steps is the run's planned number of updates.
	Steps     int      `json:"steps"`
	Examples  int      `json:"examples"`
	Settings  Settings `json:"settings"`
	Device    string   `json:"device"` // the compute backend
	Precision string   `json:"precision"`
}

// Log is a --log file read back.
type Log struct {
	// Run is the run's description; nil for a log without one (written
	// before lorakit recorded it).
	Run *RunInfo
	// Steps are the updates in the file, in increasing step order.
	Steps []StepResult
}

// logLine is one line of a --log file: the run header or an update.
// Step and Loss shadow StepResult's so that their absence shows.
type logLine struct {
	Run *RunInfo `json:"run"`
	StepResult
	Step *int     `json:"step"`
	Loss *float64 `json:"loss"`
}

// maxLogLine bounds one line of a --log file.
const maxLogLine = 1 << 20

// ReadLog reads a --log file from r (name is used in errors). Blank lines
// are skipped, and so is a last line without its newline that is not JSON
// (the run is still writing it); any other line that is neither the run
// header nor an update with a step and a loss, or whose step does not
// follow the previous one, is an ErrLog naming the line, and so is a log
// without updates.
func ReadLog(r io.Reader, name string) (*Log, error) {
	l := &Log{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4<<10), maxLogLine)
	unterminated := false // the line just scanned ends the input without a newline
	sc.Split(func(data []byte, atEOF bool) (int, []byte, error) {
		n, tok, err := bufio.ScanLines(data, atEOF)
		unterminated = atEOF && tok != nil && n == len(data) && data[len(data)-1] != '\n'
		return n, tok, err
	})
	line := 0
	for sc.Scan() {
		line++
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		bad := func(format string, args ...any) error {
			return fmt.Errorf("%s: line %d: %w: %s", name, line, ErrLog, fmt.Sprintf(format, args...))
		}
		var rec logLine
		if b[0] != '{' {
			return nil, bad("not a JSON object")
		}
		if err := json.Unmarshal(b, &rec); err != nil {
			var syntax *json.SyntaxError
			if unterminated && errors.As(err, &syntax) {
				continue // the run is still writing its last line
			}
			return nil, bad("%v", err)
		}
		switch {
		case rec.Run != nil && rec.Step != nil:
			return nil, bad("both a run header and a step")
		case rec.Run != nil && l.Run != nil:
			return nil, bad("a second run header (two runs in one log?)")
		case rec.Run != nil:
			l.Run = rec.Run
		case rec.Step == nil || rec.Loss == nil:
			return nil, bad("neither the run header nor an update with step and loss")
		default:
			s := rec.StepResult
			s.Step, s.Loss = *rec.Step, *rec.Loss
			if n := len(l.Steps); s.Step < 1 || (n > 0 && s.Step <= l.Steps[n-1].Step) {
				prev := "the start"
				if n > 0 {
					prev = fmt.Sprintf("step %d", l.Steps[n-1].Step)
				}
				return nil, bad("step %d after %s: steps must increase (two runs in one log?)", s.Step, prev)
			}
			l.Steps = append(l.Steps, s)
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, fmt.Errorf("%s: line %d: %w: longer than %d bytes", name, line+1, ErrLog, maxLogLine)
		}
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if len(l.Steps) == 0 {
		return nil, fmt.Errorf("%s: %w: no updates in it (is it the --log file of a lora-train run that made a step?)", name, ErrLog)
	}
	return l, nil
}

// ReadLogFile reads a --log file by name; "-" reads stdin.
func ReadLogFile(path string, stdin io.Reader) (*Log, error) {
	if path == "-" {
		return ReadLog(stdin, "<stdin>")
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ReadLog(f, path)
}

// openLog opens the --log file: truncated for a new run; for a resumed
// one, cut back to the run header and the lines of the steps up to the
// checkpoint and appended to, so that it reads as if the run had never
// stopped. hasRun tells whether the kept lines hold the run header.
func openLog(path string, resuming bool, step int) (f *os.File, hasRun bool, err error) {
	if !resuming {
		f, err = os.Create(path)
		return f, false, err
	}
	var kept []byte
	if old, err := os.ReadFile(path); err == nil {
		for _, line := range strings.SplitAfter(string(old), "\n") {
			var r struct {
				Run  *RunInfo `json:"run"`
				Step *int     `json:"step"`
			}
			if json.Unmarshal([]byte(line), &r) != nil || !strings.HasSuffix(line, "\n") {
				continue
			}
			if r.Run != nil && r.Step == nil && !hasRun {
				kept, hasRun = append(kept, line...), true
			} else if r.Step != nil && *r.Step <= step {
				kept = append(kept, line...)
			}
		}
	}
	if err := os.WriteFile(path, kept, 0o644); err != nil {
		return nil, false, err
	}
	f, err = os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0o644)
	return f, hasRun, err
}

// runInfo describes this run for the --log file.
func (o *Options) runInfo(base *Base, ad *Adapter, tr *Trainer, examples int, device, precision string) RunInfo {
	ri := RunInfo{Base: o.Base, Data: o.Data, ChatTemplateKwargs: o.ChatTemplateKwargs, Steps: tr.Total(), Examples: examples,
		Settings: o.Settings, Device: device, Precision: precision, Method: MethodLoRA, Targets: []string{}}
	if base.Config != nil {
		ri.ModelType = base.Config.ModelType
	}
	seen := map[string]bool{}
	for _, s := range ad.Specs {
		if t := s.Module; !seen[t] {
			seen[t] = true
			ri.Targets = append(ri.Targets, t)
		}
		switch {
		case s.IA3:
			ri.Method = MethodIA3
		case s.DoRA:
			ri.Method = "dora"
		}
		ri.Rank = max(ri.Rank, s.Rank)
	}
	if ad.IsVirtual() {
		ri.Method, ri.VirtualTokens = ad.Virtual.Method, ad.Virtual.Tokens
		return ri
	}
	if !ad.IsIA3() && ad.Config != nil {
		ri.Alpha = ad.Config.LoraAlpha
	}
	return ri
}

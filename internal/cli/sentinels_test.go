package cli_test

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	. "github.com/lorakit/lorakit/internal/cli"
	"github.com/lorakit/lorakit/internal/pyjson"
	"github.com/lorakit/lorakit/pkg/adapterops"
	"github.com/lorakit/lorakit/pkg/arch"
	"github.com/lorakit/lorakit/pkg/checkpoint"
	"github.com/lorakit/lorakit/pkg/compute"
	"github.com/lorakit/lorakit/pkg/compute/cuda"
	"github.com/lorakit/lorakit/pkg/dtype"
	"github.com/lorakit/lorakit/pkg/export"
	"github.com/lorakit/lorakit/pkg/gguf"
	"github.com/lorakit/lorakit/pkg/inspect"
	"github.com/lorakit/lorakit/pkg/llama"
	"github.com/lorakit/lorakit/pkg/merge"
	"github.com/lorakit/lorakit/pkg/model"
	"github.com/lorakit/lorakit/pkg/nf4"
	"github.com/lorakit/lorakit/pkg/output"
	"github.com/lorakit/lorakit/pkg/peft"
	"github.com/lorakit/lorakit/pkg/quantize"
	"github.com/lorakit/lorakit/pkg/safetensors"
	"github.com/lorakit/lorakit/pkg/tokenizer"
	"github.com/lorakit/lorakit/pkg/torchbin"
	"github.com/lorakit/lorakit/pkg/train"
)

// sentinels is every exported sentinel error of the module and the exit
// code it must give. TestSentinelsExitCodes checks that this table lists
// every Err* variable found in the sources, so a new sentinel cannot
// silently exit 1: its author states its class here.
var sentinels = []struct {
	name string
	err  error
	code int
}{
	{"pyjson.ErrInvalid", pyjson.ErrInvalid, ExitInvalid},
	{"adapterops.ErrIncompatible", adapterops.ErrIncompatible, ExitInvalid},
	{"adapterops.ErrUnsupported", adapterops.ErrUnsupported, ExitInvalid},
	{"adapterops.ErrOption", adapterops.ErrOption, ExitUsage},
	{"torchbin.ErrNotZip", torchbin.ErrNotZip, ExitInvalid},
	{"torchbin.ErrLegacyFormat", torchbin.ErrLegacyFormat, ExitInvalid},
	{"torchbin.ErrArchive", torchbin.ErrArchive, ExitInvalid},
	{"torchbin.ErrTruncated", torchbin.ErrTruncated, ExitInvalid},
	{"torchbin.ErrForbiddenGlobal", torchbin.ErrForbiddenGlobal, ExitInvalid},
	{"torchbin.ErrPickle", torchbin.ErrPickle, ExitInvalid},
	{"torchbin.ErrStorage", torchbin.ErrStorage, ExitInvalid},
	{"torchbin.ErrUnsupported", torchbin.ErrUnsupported, ExitInvalid},
	{"torchbin.ErrStateDict", torchbin.ErrStateDict, ExitInvalid},
	{"torchbin.ErrNotFound", torchbin.ErrNotFound, ExitInvalid},
	{"arch.ErrConfig", arch.ErrConfig, ExitInvalid},
	{"arch.ErrUnsupported", arch.ErrUnsupported, ExitInvalid},
	{"arch.ErrTarget", arch.ErrTarget, ExitInvalid},
	{"arch.ErrTensor", arch.ErrTensor, ExitInvalid},
	{"arch.ErrGGUF", arch.ErrGGUF, ExitInvalid},
	{"checkpoint.ErrConfig", checkpoint.ErrConfig, ExitInvalid},
	{"checkpoint.ErrUnsupported", checkpoint.ErrUnsupported, ExitInvalid},
	{"checkpoint.ErrNotFound", checkpoint.ErrNotFound, ExitInvalid},
	{"output.ErrStdoutTerminal", output.ErrStdoutTerminal, ExitUsage},
	{"compute.ErrOutOfMemory", compute.ErrOutOfMemory, ExitFailure},
	{"compute.ErrDevice", compute.ErrDevice, ExitFailure},
	{"cuda.ErrUnavailable", cuda.ErrUnavailable, ExitRequirement},
	{"dtype.ErrUnknown", dtype.ErrUnknown, ExitInvalid},
	{"dtype.ErrLength", dtype.ErrLength, ExitFailure},
	{"dtype.ErrUnsupported", dtype.ErrUnsupported, ExitFailure},
	{"export.ErrUnsupported", export.ErrUnsupported, ExitInvalid},
	{"export.ErrInvalid", export.ErrInvalid, ExitInvalid},
	{"export.ErrDoRA", export.ErrDoRA, ExitInvalid},
	{"export.ErrPreTokenizer", export.ErrPreTokenizer, ExitInvalid},
	{"export.ErrBase", export.ErrBase, ExitInvalid},
	{"gguf.ErrMagic", gguf.ErrMagic, ExitInvalid},
	{"gguf.ErrVersion", gguf.ErrVersion, ExitInvalid},
	{"gguf.ErrTruncated", gguf.ErrTruncated, ExitInvalid},
	{"gguf.ErrCount", gguf.ErrCount, ExitInvalid},
	{"gguf.ErrLength", gguf.ErrLength, ExitInvalid},
	{"gguf.ErrKey", gguf.ErrKey, ExitInvalid},
	{"gguf.ErrDuplicate", gguf.ErrDuplicate, ExitInvalid},
	{"gguf.ErrValueType", gguf.ErrValueType, ExitInvalid},
	{"gguf.ErrArray", gguf.ErrArray, ExitInvalid},
	{"gguf.ErrAlignment", gguf.ErrAlignment, ExitInvalid},
	{"gguf.ErrTensorName", gguf.ErrTensorName, ExitInvalid},
	{"gguf.ErrDims", gguf.ErrDims, ExitInvalid},
	{"gguf.ErrType", gguf.ErrType, ExitInvalid},
	{"gguf.ErrBlockSize", gguf.ErrBlockSize, ExitInvalid},
	{"gguf.ErrOffset", gguf.ErrOffset, ExitInvalid},
	{"gguf.ErrNotPacked", gguf.ErrNotPacked, ExitInvalid},
	{"gguf.ErrNotFound", gguf.ErrNotFound, ExitInvalid},
	{"gguf.ErrOrder", gguf.ErrOrder, ExitFailure},
	{"gguf.ErrSize", gguf.ErrSize, ExitFailure},
	{"gguf.ErrIncomplete", gguf.ErrIncomplete, ExitFailure},
	{"gguf.ErrClosed", gguf.ErrClosed, ExitFailure},
	{"gguf.ErrNonFinite", gguf.ErrNonFinite, ExitInvalid},
	{"gguf.ErrUnsupported", gguf.ErrUnsupported, ExitFailure},
	{"inspect.ErrUnrecognized", inspect.ErrUnrecognized, ExitInvalid},
	{"llama.ErrConfig", llama.ErrConfig, ExitInvalid},
	{"llama.ErrWeight", llama.ErrWeight, ExitInvalid},
	{"llama.ErrNotFound", llama.ErrNotFound, ExitInvalid},
	{"llama.ErrAdapter", llama.ErrAdapter, ExitInvalid},
	{"llama.ErrBatch", llama.ErrBatch, ExitInvalid},
	{"model.ErrNotModel", model.ErrNotModel, ExitInvalid},
	{"model.ErrNotAdapter", model.ErrNotAdapter, ExitInvalid},
	{"model.ErrNoAdapterConfig", model.ErrNoAdapterConfig, ExitInvalid},
	{"merge.ErrMismatch", merge.ErrMismatch, ExitInvalid},
	{"merge.ErrUnsupported", merge.ErrUnsupported, ExitInvalid},
	{"merge.ErrNonFinite", merge.ErrNonFinite, ExitInvalid},
	{"nf4.ErrBlocksize", nf4.ErrBlocksize, ExitInvalid},
	{"nf4.ErrLength", nf4.ErrLength, ExitFailure},
	{"nf4.ErrType", nf4.ErrType, ExitInvalid},
	{"nf4.ErrDType", nf4.ErrDType, ExitInvalid},
	{"nf4.ErrState", nf4.ErrState, ExitInvalid},
	{"nf4.ErrMissing", nf4.ErrMissing, ExitInvalid},
	{"nf4.ErrConfig", nf4.ErrConfig, ExitInvalid},
	{"peft.ErrInvalidConfig", peft.ErrInvalidConfig, ExitInvalid},
	{"peft.ErrUnsupportedType", peft.ErrUnsupportedType, ExitInvalid},
	{"peft.ErrUnsupportedVariant", peft.ErrUnsupportedVariant, ExitInvalid},
	{"peft.ErrUnsupportedFeature", peft.ErrUnsupportedFeature, ExitInvalid},
	{"peft.ErrMutatedBase", peft.ErrMutatedBase, ExitInvalid},
	{"peft.ErrMergedLinear", peft.ErrMergedLinear, ExitInvalid},
	{"peft.ErrUnsupportedPattern", peft.ErrUnsupportedPattern, ExitInvalid},
	{"peft.ErrBadKey", peft.ErrBadKey, ExitInvalid},
	{"peft.ErrUnsupportedKey", peft.ErrUnsupportedKey, ExitInvalid},
	{"peft.ErrShape", peft.ErrShape, ExitInvalid},
	{"peft.ErrMissingTensor", peft.ErrMissingTensor, ExitInvalid},
	{"peft.ErrDuplicateTensor", peft.ErrDuplicateTensor, ExitInvalid},
	{"quantize.ErrQuantized", quantize.ErrQuantized, ExitInvalid},
	{"quantize.ErrNotQuantized", quantize.ErrNotQuantized, ExitInvalid},
	{"quantize.ErrNothing", quantize.ErrNothing, ExitInvalid},
	{"quantize.ErrInternal", quantize.ErrInternal, ExitFailure},
	{"safetensors.ErrHeader", safetensors.ErrHeader, ExitInvalid},
	{"safetensors.ErrTensor", safetensors.ErrTensor, ExitInvalid},
	{"safetensors.ErrNotFound", safetensors.ErrNotFound, ExitInvalid},
	{"safetensors.ErrTruncated", safetensors.ErrTruncated, ExitInvalid},
	{"safetensors.ErrWrite", safetensors.ErrWrite, ExitFailure},
	{"safetensors.ErrIndex", safetensors.ErrIndex, ExitInvalid},
	{"tokenizer.ErrFormat", tokenizer.ErrFormat, ExitInvalid},
	{"tokenizer.ErrUnsupported", tokenizer.ErrUnsupported, ExitInvalid},
	{"tokenizer.ErrNoTemplate", tokenizer.ErrNoTemplate, ExitInvalid},
	{"tokenizer.ErrTemplate", tokenizer.ErrTemplate, ExitInvalid},
	{"train.ErrData", train.ErrData, ExitInvalid},
	{"train.ErrModel", train.ErrModel, ExitInvalid},
	{"train.ErrAdapter", train.ErrAdapter, ExitInvalid},
	{"train.ErrResume", train.ErrResume, ExitInvalid},
	{"train.ErrLog", train.ErrLog, ExitInvalid},
	{"train.ErrSettings", train.ErrSettings, ExitUsage},
}

// TestSentinelsExitCodes walks the non-test sources of pkg/ and internal/,
// finds every exported package-level Err* variable, and checks that each is
// declared with errclass.New (its class is explicit), appears in the table
// above, and gives the table's exit code once wrapped with context.
func TestSentinelsExitCodes(t *testing.T) {
	declared := declaredSentinels(t)
	listed := map[string]bool{}
	for _, s := range sentinels {
		name := s.name
		listed[name] = true
		if !declared[name] {
			t.Errorf("%s is in the table but not declared as a sentinel in the sources", name)
		}
		wrapped := fmt.Errorf("model.safetensors: tensor %q: %w", "w", s.err)
		if got := ExitCode(wrapped); got != s.code {
			t.Errorf("%s: exit code %d, want %d", name, got, s.code)
		}
	}
	for name := range declared {
		if !listed[name] {
			t.Errorf("sentinel %s is not in the table of exit codes: add it with its intended code", name)
		}
	}
	if len(declared) < 80 {
		t.Fatalf("found only %d sentinels: the source walk is broken", len(declared))
	}
}

// declaredSentinels parses the sources and returns "pkg.ErrName" of every
// exported Err* variable, failing the test for one not made by errclass.New.
func declaredSentinels(t *testing.T) map[string]bool {
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	out := map[string]bool{}
	fset := token.NewFileSet()
	for _, top := range []string{"pkg", "internal"} {
		err := filepath.WalkDir(filepath.Join(root, top), func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			f, err := parser.ParseFile(fset, path, nil, 0)
			if err != nil {
				return err
			}
			for _, decl := range f.Decls {
				gd, ok := decl.(*ast.GenDecl)
				if !ok || gd.Tok != token.VAR {
					continue
				}
				for _, spec := range gd.Specs {
					vs := spec.(*ast.ValueSpec)
					for i, id := range vs.Names {
						if !strings.HasPrefix(id.Name, "Err") || !id.IsExported() {
							continue
						}
						name := f.Name.Name + "." + id.Name
						out[name] = true
						if i >= len(vs.Values) || !isErrclassNew(vs.Values[i]) {
							t.Errorf("%s: %s is not declared with errclass.New(class, ...)", fset.Position(id.Pos()), name)
						}
					}
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func isErrclassNew(e ast.Expr) bool {
	call, ok := e.(*ast.CallExpr)
	if !ok {
		return false
	}
	sel, ok := call.Fun.(*ast.SelectorExpr)
	if !ok || sel.Sel.Name != "New" {
		return false
	}
	pkg, ok := sel.X.(*ast.Ident)
	return ok && pkg.Name == "errclass"
}

// Package adapterops works on LoRA adapters themselves, without the base
// model: Combine merges several adapters into one (PEFT's
// add_weighted_adapter), Resize truncates each module's ΔW = s·B·A to a
// smaller rank, and Diff compares the ΔW of two adapters module by module.
//
// Everything that depends on ΔW only through its product (cat, svd, resize,
// the norms and inner products of diff) is computed exactly from the r×r
// cores of package linalg; an out×in matrix is formed only by the methods
// whose definition is elementwise on ΔW (ties_svd, dare_*_svd,
// magnitude_prune_svd), one module at a time.
//
// # Combine: PEFT's add_weighted_adapter
//
// The reference is PEFT 0.21 (huggingface/peft: src/peft/tuners/lora/model.py,
// add_weighted_adapter and the two helpers it calls, and
// src/peft/utils/merge_utils.py). With wᵢ the weight and sᵢ the scaling
// (α/r, or α/√r with rsLoRA) of adapter i in a module:
//
//   - cat: A' = rows of f32(f32(Aᵢ·wᵢ)·sᵢ) stacked, B' = columns of Bᵢ side by
//     side: exactly B'·A' = Σ wᵢ·sᵢ·Bᵢ·Aᵢ. Ranks add up.
//   - linear, ties, dare_linear, dare_ties, magnitude_prune: the function
//     is applied to the A matrices and to the B matrices separately, with
//     weights √|wᵢ·sᵢ|·sign(wᵢ·sᵢ) on A and √|wᵢ·sᵢ| on B. For linear this is
//     A' = Σ √|wᵢsᵢ|·sign·Aᵢ, B' = Σ √|wᵢsᵢ|·Bᵢ, whose product has the cross
//     terms √|wᵢsᵢ·wⱼsⱼ|·Bᵢ·Aⱼ: it is NOT the weighted sum of the deltas
//     unless there is one adapter. Every adapter must have the same rank.
//   - svd, ties_svd, dare_linear_svd, dare_ties_svd, magnitude_prune_svd:
//     the function is applied to the deltas ΔWᵢ = sᵢ·Bᵢ·Aᵢ with weights wᵢ,
//     and the result is truncated to svd_rank by SVD: B' = U_k·diag(σ_k),
//     A' = V_kᵀ. svd itself is Σ wᵢ·ΔWᵢ, factored exactly from the cores.
//   - ties: each tensor keeps its int(density·numel) entries of largest
//     magnitude; the sign of each position is elected from the pruned,
//     unweighted tensors (total: the sign of their sum; frequency: the sign
//     with more votes; ties go to +); the weighted entries that agree with
//     it are averaged. dare_*: each entry is kept with probability density
//     and divided by density, then summed (dare_linear) or sign-elected like
//     ties (dare_ties). magnitude_prune: ties' pruning, then the weighted sum.
//
// The new adapter has r = lora_alpha = new rank and use_rslora false, so its
// scaling is 1 and every source scaling is folded into the tensors; its
// other config fields come from the first adapter, target_modules is the
// union of the lists (or the "|"-joined regexes). New rank: linear and the
// pruning methods keep the common rank; cat adds the ranks; the svd methods
// use svd_rank, by default the largest rank of the inputs.
//
// # Where lorakit differs from PEFT, and why
//
//   - DARE's random masks: torch.bernoulli's stream cannot be reproduced. The
//     keep/drop decision of entry j (row-major) of tensor t of adapter i in
//     module M is a pure function of (seed, M, t, i, j): see DAREKeep. Runs
//     are reproducible, parallel and order-independent; the statistics
//     (fraction kept, 1/density rescaling) are PEFT's.
//   - Magnitude pruning keeps exactly int(density·numel) entries; among
//     entries of equal magnitude at the cut the lowest indices win (torch.topk
//     leaves this unspecified).
//   - SVD: singular vectors are unique only up to sign (and up to rotation
//     within equal singular values); PEFT's depend on the LAPACK/cuSOLVER
//     driver. lorakit computes them exactly from the cores in float64 (svd)
//     or, for the dense *_svd methods, to float32 accuracy (see below), and
//     fixes signs by package linalg's convention. B'·A' is what matters and
//     is the same; svd_clamp, which clamps entries of U·S and Vᵀ to a
//     quantile of their values, depends on the signs and so on the driver.
//     full_matrices and driver only matter in PEFT when the new rank exceeds
//     min(out, in) (PEFT then fails or writes tensors that do not match its
//     config); lorakit caps such modules at min(out, in) and records the
//     rank in rank_pattern. A rank above the delta's own rank gives zero
//     columns of B and zero rows of A.
//   - Ranks that differ per module (rank_pattern): PEFT sizes the new
//     adapter from the configs and writes tensors whose shapes disagree
//     with its config; lorakit writes rank_pattern and alpha_pattern (equal,
//     so every module keeps scaling 1) for every module whose rank is not r.
//   - svd on PEFT ≤ 0.20 applied each adapter's scaling twice, and every
//     method inherited use_rslora (scaling √r instead of 1); PEFT 0.21 fixed
//     both (PRs #3111, #3449) and lorakit follows 0.21.
//   - PEFT refuses adapters with modules_to_save on the same module, and
//     the new adapter's modules_to_save copies are the base's. lorakit also
//     refuses conflicts and otherwise carries each such tensor unchanged from
//     the one adapter that has it (modules_to_save in the config becomes the
//     union), since without the base there is nothing else to write.
//   - DoRA adapters are refused (the magnitude depends on the base weights),
//     as are lora_bias adapters (PEFT drops the bias when combining).
//
// # Resize
//
// Each module's ΔW = s·B·A is factored exactly (package linalg) and
// truncated to a rank chosen by a RankRule: a fixed rank, a fraction of the
// energy Σσ², a threshold relative to σ₁, or kohya-ss resize_lora's
// sv_ratio, sv_fro and sv_cumulative. By Eckart–Young the result is the best
// approximation of that rank in the Frobenius norm. The output folds the
// scaling into B (B' = U_k·diag(σ_k), A' = V_kᵀ) and writes r = lora_alpha =
// the largest new rank, use_rslora false, and rank_pattern = alpha_pattern
// for the modules of other ranks: scaling 1 everywhere, in PEFT and also in
// servers that ignore the patterns. DoRA adapters are refused: their merged
// weight renormalises W0 + ΔW by the base's row norms, which a truncated ΔW
// changes in a way only the base can tell.
//
// # Streaming
//
// Modules are read, computed and written one at a time, in the output's
// tensor order, with a few in flight on worker goroutines; memory is a
// small multiple of one module's tensors. Outputs do not depend on the
// number of workers.
//
// # The dense methods
//
// ties_svd, dare_*_svd and magnitude_prune_svd hold one out×in float32
// matrix at a time (outside the Go heap; 235 MB for an 8B MLP projection)
// and use every worker on it. Each ΔWᵢ = f32(f32(Bᵢ·Aᵢ)·sᵢ) is computed block
// by block of rows with lora-merge's kernel (float32 fused multiply-adds,
// spec peft.md §7.6), twice to find a magnitude threshold (a histogram of
// the top 16 bits of |x|, then the entries of one bucket) and once to be
// pruned and combined into the matrix. Its leading singular triplets come
// from a block subspace iteration (Rayleigh–Ritz, block size svd_rank plus
// max(svd_rank, 10), or the sum of the input ranks when larger) that starts
// from the rows of the inputs' A, near which the combination's row space
// lies: two or three iterations of float32 GEMMs (package compute/cpu)
// reach a residual ‖D·vⱼ − σⱼ·uⱼ‖ below 2e-6·σ₁. The factors match the full
// SVD to float32 accuracy; a module whose iteration stops early gets a
// note in the report.
package adapterops

import "github.com/lorakit/lorakit/pkg/errclass"

// Sentinel errors; every error wraps one of them (or another package's) and
// names the file, module or tensor at fault.
var (
	// ErrIncompatible: adapters that cannot be combined or compared (different
	// module shapes, different ranks where the method needs equal ones,
	// target_modules of different kinds, conflicting modules_to_save).
	ErrIncompatible = errclass.New(errclass.Invalid, "adapterops: incompatible adapters")
	// ErrUnsupported: an adapter or module this package does not handle
	// exactly (DoRA, lora_bias when combining, AdaLoRA, IA³, non-finite
	// values).
	ErrUnsupported = errclass.New(errclass.Invalid, "adapterops: unsupported adapter")
	// ErrOption: an invalid option (unknown method, density out of range,
	// no rank rule, ...).
	ErrOption = errclass.New(errclass.Usage, "adapterops: invalid option")
)

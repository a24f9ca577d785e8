package compute

// Device describes the hardware behind a backend.
type Device struct {
	Name string // e.g. "NVIDIA H200"
	// ComputeCapability is major·10 + minor for a CUDA GPU (90 for
	// Hopper), 0 otherwise.
	ComputeCapability int
	Multiprocessors   int
	Memory            int64 // bytes of device memory (0: unknown)
	// BF16TensorCores reports matrix units that multiply bf16 with f32
	// accumulation (CUDA sm_80 and later): bf16 mixed precision is then
	// the fast path and the default.
	BF16TensorCores bool
}

// Describer is implemented by backends that can describe their device.
type Describer interface {
	Device() Device
}

// MemoryStats is a backend's use of device memory, in bytes.
type MemoryStats struct {
	InUse int64 // held by live buffers and in-flight scratch
	Peak  int64 // the largest InUse since the last ResetPeakMemory
	// Reserved is what the allocator holds from the device: InUse plus its
	// cache of free blocks; PeakReserved its largest value.
	Reserved     int64
	PeakReserved int64
}

// MemoryReporter is implemented by backends that account for their device
// memory (a caching allocator).
type MemoryReporter interface {
	MemoryStats() MemoryStats
	// ResetPeakMemory starts a new peak at the current use.
	ResetPeakMemory()
}

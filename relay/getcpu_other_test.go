//go:build !linux

package relay

// currentCPU is -1 where getcpu(2) is not available.
func currentCPU() int { return -1 }

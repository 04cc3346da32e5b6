package api

// Limits on what one object may hold (docs/ARCHITECTURE.md, "Input limits"). Validate
// refuses an object beyond them; nothing in EGW needs more, and each bounds the work and
// the memory one request can cost and the size of what reading it back returns.
const (
	// MaxListLen bounds each list of names: an EPolicy's allowedServers and allowedSites,
	// a ServiceExpose's eSites and ePolicys.
	MaxListLen = 256
	// MaxLabels bounds an object's labels and, separately, its annotations.
	MaxLabels = 64
	// MaxLabelKeyLen and MaxLabelValueLen bound one label's or annotation's key and value,
	// in bytes.
	MaxLabelKeyLen   = 253
	MaxLabelValueLen = 4096
	// MaxReportedErrors is how many problems a ValidationError lists; it counts the rest.
	MaxReportedErrors = 20
)

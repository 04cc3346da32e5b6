package nat

// Reason is a constant that names why a packet was dropped (or "ok"). Reasons index the
// engine's drop counters, so counting a drop never allocates.
type Reason uint8

const (
	ReasonOK Reason = iota
	// The nat helper extends this list (malformed-*, denied-*, no-mapping, pool-exhausted,
	// ttl-expired, ...). Keep ReasonOK first and NumReasons last.
	NumReasons
)

var reasonNames = [NumReasons]string{
	ReasonOK: "ok",
}

func (r Reason) String() string {
	if r < NumReasons {
		return reasonNames[r]
	}
	return "unknown"
}

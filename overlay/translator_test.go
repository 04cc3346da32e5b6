package overlay

import "github.com/egw-project/egw/nat"

// The real engine plugs into the seam.
var _ Translator = (*nat.Engine)(nil)

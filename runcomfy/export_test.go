package runcomfy

// For the tests of package runcomfy_test, which can use runcomfytest.

// BodiesPeak is the most of c's body budget ever reserved at once.
func BodiesPeak(c *Client) int64 { return c.bodies.peak.Load() }

const ProbeSize = probeSize

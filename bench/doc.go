// Package bench is the home of EGW's end-to-end benchmarks. The runnable part is
// bench/cmd/egwbench; this package holds the report format it writes, so other tools (CI
// comparisons, the README table) can read the JSON without importing the program.
package bench

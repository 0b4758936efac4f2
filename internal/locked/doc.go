// Package locked keeps small secrets (PINs, root keys) in memory that is
// locked against swapping, left out of core dumps and never moved by the
// garbage collector, and clears them on request.
package locked

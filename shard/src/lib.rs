//! `atlas-shard`: everything one Atlas core owns, as plain synchronous data structures with an
//! injected clock. No glommio, no sockets, no locks: it tests and benches anywhere.

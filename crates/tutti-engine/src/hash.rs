//! The hash maps of the driver's hot paths (effects, attempts, replay's journaled calls), keyed by effect ids
//! and names the run itself makes: a fast hash, seeded per process, instead of SipHash.

pub(crate) type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
pub(crate) type HashSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;

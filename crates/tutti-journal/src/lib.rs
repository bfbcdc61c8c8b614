//! tutti's journal: the versioned event format, the [`Store`] trait every backend implements (the sum of
//! [`EventLog`], [`Blobs`], [`Leases`] and [`CommandQueue`]), the SQLite and PostgreSQL backends, the content-addressed blob
//! store and the group-commit [`Writer`]. It knows nothing of JavaScript, harnesses or scheduling; it stores
//! facts and hands them back in order.

pub mod blob;
pub mod event;
pub mod pg;
pub mod sqlite;
pub mod store;
pub mod work;
pub mod writer;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;

pub use blob::INLINE_LIMIT;
pub use event::{
    Actor, EffectId, ErrorInfo, Event, NewEvent, Outcome, Payload, Record, RunId, RunStatus, SCHEMA_VERSION, Seq, Usage,
};
pub use pg::{Listen, PgStore, PgWorkQueue};
pub use sqlite::SqliteStore;
pub use store::{
    Blobs, Command, CommandListener, CommandQueue, Error, EventLog, LeaseHolder, LeaseOutcome, Leases, RunSummary,
    Store,
};
pub use work::{Claim, Offer, WorkQueue, WorkState, WorkerInfo};
pub use writer::{Durability, Pending, Writer, WriterHandle, WriterStore};

//! tutti's engine: runs, scopes and effect identities, replay, and the dispatcher that drives a process
//! through the [`Harness`] trait and journals every fact. It does not run JavaScript itself (that is
//! `tutti-js`, behind the [`ProcessHost`] trait) nor any subprocess (that is `tutti-harness`).

pub mod budget;
pub mod driver;
mod effect;
pub mod error;
pub mod harness;
mod hash;
pub mod host;
pub mod identity;
pub mod kind;
pub mod observer;
pub mod platform;
pub mod prices;
pub mod registry;
mod replay;
pub mod retry;
mod schema;
pub use schema::declared as output_schema;

pub use driver::{Changes, Driver, NewRun, Options, RunEnd};
pub use error::{Call, Error, Nondeterminism};
pub use harness::{Failure, Harness, HarnessEvent, Job, Outcome, Reporter, Running};
pub use host::{EffectRequest, HostError, HostEvent, ProcessHost};
pub use kind::Kind;
pub use observer::{Observer, Progress, Silent};
pub use platform::Platform;
pub use registry::Harnesses;

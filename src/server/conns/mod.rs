//! Connection accounting: who may hold how many connections, how long a connection lives,
//! and one summary line for everything shed (a flood must not flood the log too).

mod lifetime;
mod source;
mod summary;

pub use lifetime::{Closing, Counted, Lifetime, Streams, drive};
pub use source::{PerSource, SourceKey, SourceSlot};
pub use summary::{Shed, ShedSummary, Summary};

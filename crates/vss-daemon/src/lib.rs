//! vssd, the VSS coordinator, as a library: [`run`] serves `vss.Requester` on a socket until
//! the shutdown future resolves. The `vssd` binary only parses arguments, sets up logging and
//! calls it; tests run it in-process or as a child process.

pub mod activation;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod config_file;
mod consistency;
pub mod engine;
pub mod fanout;
pub mod faults;
pub mod lock;
pub mod logbuf;
pub mod ops;
pub mod server;
mod snapshot;
pub mod timefmt;

pub use config::{Config, Deadlines};
pub use server::run;

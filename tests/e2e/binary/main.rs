//! The binary layer: the real `flowgate` binary, run as its users run it —
//! the author CLI and its scaffold, and the service killed with SIGKILL
//! under load and restarted.

mod authoring;
mod cli;
mod crash;
mod docs;

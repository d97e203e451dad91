//! The VM library on disk, config.ini, the CLI, and the ISO/disk tools.
//! Depends on `vmm`; never the other way round.

pub mod cli;
pub mod config;
pub mod disk;
pub mod iso;
pub mod library;
pub mod run;
pub mod size;

//! What both gpucost binaries share at their edge, so that it exists once: a TOML configuration file that
//! can say everything the flags say (`config_file`), logging set-up (`logs`) and the shutdown signals
//! (`shutdown`).

pub mod config_file;
pub mod logs;
pub mod shutdown;
